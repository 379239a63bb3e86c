// store — names shared by every backend, and the choice of backend; see store.h.
#include "daemon/spool/store.h"

#include <cerrno>

#include "daemon/spool/file_store.h"
#include "daemon/spool/segment_store.h"
#if ESAD_HAVE_ROCKSDB
#include "daemon/spool/rocks_store.h"
#endif

namespace esad::spool {
namespace {

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

void add_inner_stats(StoreStats& own, const StoreStats& inner) {
    own.quarantined += inner.quarantined;
    own.removed += inner.removed;
    own.probes_ok += inner.probes_ok;
}

std::string_view to_string(LoadStatus s) {
    switch (s) {
        case LoadStatus::kOk:
            return "ok";
        case LoadStatus::kMissing:
            return "missing";
        case LoadStatus::kIoError:
            return "io_error";
        case LoadStatus::kCorrupt:
            return "corrupt";
    }
    return "unknown";
}

std::string mid_name(Mid mid) {
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, mid >>= 4)
        s[i] = kHex[mid & 0xFu];
    return s;
}

bool parse_mid_name(std::string_view name, Mid& mid) {
    if (name.size() != 16) return false;
    Mid v = 0;
    for (char c : name) {
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else {
            return false;
        }
        v = (v << 4) | static_cast<Mid>(d);
    }
    if (v == 0) return false;
    mid = v;
    return true;
}

std::string_view to_string(Layout layout) {
    switch (layout) {
        case Layout::kFlat:
            return "flat";
        case Layout::kHashed:
            return "hashed";
        case Layout::kSegment:
            return "segment";
        case Layout::kRocksdb:
            return "rocksdb";
    }
    return "unknown";
}

bool parse_layout(std::string_view text, Layout& out) {
    if (text == "flat") {
        out = Layout::kFlat;
    } else if (text == "hashed") {
        out = Layout::kHashed;
    } else if (text == "segment") {
        out = Layout::kSegment;
#if ESAD_HAVE_ROCKSDB
    } else if (text == "rocksdb") {
        out = Layout::kRocksdb;
#endif
    } else {
        return false;
    }
    return true;
}

IoStatus Store::open(StoreOptions options, std::unique_ptr<Store>& out) {
    switch (options.layout) {
        case Layout::kFlat:
            return FlatStore::open(std::move(options), out);
        case Layout::kHashed:
            return HashedStore::open(std::move(options), out);
        case Layout::kSegment:
            return SegmentStore::open(std::move(options), out);
        case Layout::kRocksdb:
#if ESAD_HAVE_ROCKSDB
            return RocksStore::open(std::move(options), out);
#else
            return IoStatus::failure(ENOTSUP, "spool layout rocksdb (built without RocksDB)");
#endif
    }
    return IoStatus::failure(EINVAL, "spool layout " + std::string(to_string(options.layout)));
}

}  // namespace esad::spool
