// See capture_files.h.
#include "common/capture_files.h"

#include <dirent.h>

#include <algorithm>

namespace esad {

std::vector<std::string> capture_file_names(const std::string& dir) {
    std::vector<std::string> names;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            if (n.rfind("capture-", 0) == 0 && n.size() > 15 &&
                n.compare(n.size() - 7, 7, ".pcapng") == 0)
                names.push_back(n);
        }
        closedir(d);
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace esad
