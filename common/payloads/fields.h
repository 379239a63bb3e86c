// The machinery of the typed control payloads (common/payloads/*.h): every request-args and
// reply struct lists its JSON keys once, in a static member template
//
//     template <class V, class Self> static void fields(V& v, Self& x) {
//         v("version", x.version);          // always on the wire
//         v.omit_empty("size", x.size);     // std::optional: on the wire only when set
//     }
//
// and to_json / from_json below walk that list, so esad (which fills and serializes) and
// esactl (which parses and renders) share one definition of every key. A std::optional field
// given with v(...) is written as null when empty. Reading checks each field's type and names
// the field in a PayloadError ("hosts[2].active_recipients: expected an unsigned integer, got
// string"); nothing else escapes. Reply structs need their fields present; args structs
// (kArgs) keep their defaults for absent or null keys.
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace esad::payloads {

using nlohmann::json;

// A payload that does not have the shape of its type. what() names the field.
class PayloadError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A payload struct declares `using PayloadTag = void;`; an args struct (a request's
// arguments) also `static constexpr bool kArgs = true;`.
template <class T>
concept HasFields = std::is_class_v<T> && requires {
    typename T::PayloadTag;
};

template <class T>
inline constexpr bool is_args_v = requires {
    T::kArgs;
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

namespace detail {

std::string type_name(const json& j);
[[noreturn]] void fail(const std::string& path, const std::string& what);
inline std::string join(const std::string& path, const char* key) {
    return path.empty() ? std::string(key) : std::string(path).append(".").append(key);
}

template <class T>
json to_value(const T& v);

class Writer {
  public:
    explicit Writer(json& out) : out_(out) {}
    template <class T>
    void operator()(const char* key, const T& v) {
        out_[key] = to_value(v);
    }
    template <class T>
    void omit_empty(const char* key, const std::optional<T>& v) {
        if (v) out_[key] = to_value(*v);
    }

  private:
    json& out_;
};

template <class T>
json to_value(const T& v) {
    if constexpr (is_optional<T>::value) {
        return v ? to_value(*v) : json(nullptr);
    } else if constexpr (HasFields<T>) {
        json out = json::object();
        Writer w(out);
        T::fields(w, v);
        return out;
    } else if constexpr (std::is_same_v<T, json> || std::is_same_v<T, std::string> ||
                         std::is_arithmetic_v<T>) {
        return json(v);
    } else if constexpr (requires { typename T::mapped_type; }) {
        json out = json::object();
        for (const auto& [k, x] : v)
            out[k] = to_value(x);
        return out;
    } else {
        json out = json::array();
        for (const auto& x : v)
            out.push_back(to_value(x));
        return out;
    }
}

template <class T>
void read_value(const json& j, const std::string& path, T& out);

class Reader {
  public:
    Reader(const json& in, std::string path, bool args)
        : in_(in), path_(std::move(path)), args_(args) {}
    template <class T>
    void operator()(const char* key, T& out) {
        auto it = in_.find(key);
        if (it == in_.end() || it->is_null()) {
            if (args_) return;  // the default stands
            if constexpr (is_optional<T>::value) {
                out.reset();
                return;
            } else {
                fail(join(path_, key), it == in_.end() ? "missing" : "null");
            }
        }
        read_value(*it, join(path_, key), out);
    }
    template <class T>
    void omit_empty(const char* key, std::optional<T>& out) {
        auto it = in_.find(key);
        if (it == in_.end() || it->is_null()) {
            if (!args_) out.reset();
            return;
        }
        read_value(*it, join(path_, key), out);
    }

  private:
    const json& in_;
    std::string path_;
    bool args_;
};

template <class T>
void read_value(const json& j, const std::string& path, T& out) {
    if constexpr (is_optional<T>::value) {
        if (j.is_null()) {
            out.reset();
            return;
        }
        typename T::value_type v{};
        read_value(j, path, v);
        out = std::move(v);
    } else if constexpr (HasFields<T>) {
        if (!j.is_object()) fail(path, "expected an object, got " + type_name(j));
        Reader r(j, path, is_args_v<T>);
        T::fields(r, out);
    } else if constexpr (std::is_same_v<T, json>) {
        out = j;
    } else if constexpr (std::is_same_v<T, std::string>) {
        if (!j.is_string()) fail(path, "expected a string, got " + type_name(j));
        out = j.get<std::string>();
    } else if constexpr (std::is_same_v<T, bool>) {
        if (!j.is_boolean()) fail(path, "expected true or false, got " + type_name(j));
        out = j.get<bool>();
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!j.is_number()) fail(path, "expected a number, got " + type_name(j));
        out = j.get<T>();
    } else if constexpr (std::is_unsigned_v<T>) {
        if (!j.is_number_integer() || (!j.is_number_unsigned() && j.get<int64_t>() < 0) ||
            j.get<uint64_t>() > std::numeric_limits<T>::max())
            fail(path, "expected an unsigned integer, got " + type_name(j));
        out = j.get<T>();
    } else if constexpr (std::is_integral_v<T>) {
        if (!j.is_number_integer() ||
            (j.is_number_unsigned() &&
             j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<T>::max())) ||
            (!j.is_number_unsigned() && (j.get<int64_t>() < std::numeric_limits<T>::min() ||
                                         j.get<int64_t>() > std::numeric_limits<T>::max())))
            fail(path, "expected an integer, got " + type_name(j));
        out = j.get<T>();
    } else if constexpr (requires { typename T::mapped_type; }) {
        if (!j.is_object()) fail(path, "expected an object, got " + type_name(j));
        out.clear();
        for (const auto& [k, x] : j.items())
            read_value(x, join(path, k.c_str()), out[k]);
    } else {
        if (!j.is_array()) fail(path, "expected a list, got " + type_name(j));
        out.clear();
        for (size_t i = 0; i < j.size(); ++i) {
            out.emplace_back();
            read_value(j[i], path + "[" + std::to_string(i) + "]", out.back());
        }
    }
}

}  // namespace detail

// nlohmann's hooks: `json j = reply;` and `j.get<Reply>()` (which throws PayloadError).
template <HasFields T>
void to_json(json& j, const T& v) {
    j = detail::to_value(v);
}
template <HasFields T>
void from_json(const json& j, T& v) {
    detail::read_value(j, "", v);
}

// The payload `j` as a T; PayloadError (naming the field) when it does not fit.
template <HasFields T>
T parse(const json& j) {
    T v{};
    detail::read_value(j, "", v);
    return v;
}

// The same without exceptions: nullopt and *error set when `j` does not fit.
template <HasFields T>
std::optional<T> try_parse(const json& j, std::string* error) {
    try {
        return parse<T>(j);
    } catch (const PayloadError& e) {
        *error = e.what();
    }
    return std::nullopt;
}

}  // namespace esad::payloads
