// NPY/NPZ reading and writing. The NPY header is numpy's documented format (version 1.0/2.0);
// the zip container is handled by libzip.
#include "phasemap/io/npz.hpp"

#include <fmt/core.h>
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <stdexcept>
#include <unistd.h>

namespace phasemap::io {
namespace {

size_t dtype_size(const std::string& dt) {
    if (dt.size() < 3) throw std::invalid_argument("bad dtype '" + dt + "'");
    return std::stoul(dt.substr(2));
}

std::string shape_tuple(const std::vector<size_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "") + (i + 1 < shape.size() ? " " : "");
    return s + ")";
}

// Header of fixed total length `total` (multiple of 64) so it can be rewritten in place.
std::string npy_header(const std::string& dtype, const std::vector<size_t>& shape, size_t total = 0) {
    std::string dict = "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': " + shape_tuple(shape) + ", }";
    const size_t pre = 10;  // magic(6) + version(2) + u16 length
    size_t len = pre + dict.size() + 1;
    size_t want = total ? total : ((len + 63) / 64) * 64;
    if (want < len) throw std::runtime_error("npy header does not fit its reserved space");
    dict.append(want - len, ' ');
    dict.push_back('\n');
    std::string h = "\x93NUMPY";
    h.push_back('\x01');
    h.push_back('\x00');
    const uint16_t hl = static_cast<uint16_t>(dict.size());
    h.push_back(char(hl & 0xff));
    h.push_back(char(hl >> 8));
    return h + dict;
}

[[noreturn]] void fail_io(const std::string& what, const fs::path& p) {
    throw std::runtime_error(fmt::format("{} '{}': {}", what, p.string(), std::strerror(errno)));
}

}  // namespace

// The largest NPZ member read into memory: 8 GiB by default, PHASEMAP_MAX_MEMBER_MB to change.
uint64_t max_member_bytes() {
    if (const char* e = std::getenv("PHASEMAP_MAX_MEMBER_MB"); e && *e) {
        char* end = nullptr;
        const unsigned long long mb = std::strtoull(e, &end, 10);
        if (*end == '\0' && mb >= 1 && mb <= (1ull << 24)) return uint64_t(mb) << 20;
        throw std::runtime_error(fmt::format("PHASEMAP_MAX_MEMBER_MB must be a whole number of MiB from 1 to 16777216, got '{}'", e));
    }
    return uint64_t(8) << 30;
}

// ------------------------------------------------------------------ NpyStreamWriter
// Reserve 128 header bytes: enough for any 3-d shape with 20-digit dimensions.
static constexpr size_t kStreamHeader = 128;

NpyStreamWriter::NpyStreamWriter(const fs::path& path, std::string dtype, std::vector<size_t> trailing)
    : path_(path), dtype_(std::move(dtype)), trailing_(std::move(trailing)) {
    item_size_ = dtype_size(dtype_);
    row_bytes_ = std::accumulate(trailing_.begin(), trailing_.end(), item_size_, std::multiplies<size_t>());
    f_ = std::fopen(path_.c_str(), "wb");
    if (!f_) fail_io("cannot create", path_);
    write_header();
}

NpyStreamWriter::~NpyStreamWriter() {
    if (f_) std::fclose(f_);
}

void NpyStreamWriter::write_header() {
    std::vector<size_t> shape{rows_};
    shape.insert(shape.end(), trailing_.begin(), trailing_.end());
    const std::string h = npy_header(dtype_, shape, kStreamHeader);
    if (std::fseek(f_, 0, SEEK_SET) != 0 || std::fwrite(h.data(), 1, h.size(), f_) != h.size()) fail_io("cannot write", path_);
    if (std::fseek(f_, 0, SEEK_END) != 0) fail_io("cannot seek", path_);
}

void NpyStreamWriter::append(const void* data, size_t n_rows) {
    if (!f_) throw std::logic_error("NpyStreamWriter: append after finish");
    const size_t n = n_rows * row_bytes_;
    if (n && std::fwrite(data, 1, n, f_) != n) fail_io("cannot write", path_);
    rows_ += n_rows;
}

void NpyStreamWriter::finish() {
    if (!f_) return;
    write_header();
    const bool ok = std::fflush(f_) == 0;
    std::fclose(f_);
    f_ = nullptr;
    if (!ok) fail_io("cannot write", path_);
}

std::string npy_bytes(const std::string& dtype, const std::vector<size_t>& shape, const void* data) {
    const size_t n = std::accumulate(shape.begin(), shape.end(), size_t(1), std::multiplies<size_t>());
    std::string s = npy_header(dtype, shape);
    s.append(static_cast<const char*>(data), n * dtype_size(dtype));
    return s;
}

// ------------------------------------------------------------------ NpzBuilder
void NpzBuilder::add_file(const std::string& member, const fs::path& file) {
    members_.push_back({member, file, {}, true});
}

void NpzBuilder::add_bytes(const std::string& member, std::string bytes) {
    members_.push_back({member, {}, std::move(bytes), false});
}

void NpzBuilder::commit(const fs::path& out, bool compress) const {
    // The zip is assembled in the atomic writer's temporary folder (libzip's own temporary file
    // lands there too), then fsynced and renamed onto `out`.
    AtomicFile file(out);
    const fs::path& tmp = file.temp_path();
    int err = 0;
    zip_t* za = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        std::string msg = zip_error_strerror(&ze);
        zip_error_fini(&ze);
        throw std::runtime_error(fmt::format("cannot create '{}': {}", out.string(), msg));
    }
    auto abort_with = [&](const std::string& msg) {
        zip_discard(za);
        throw std::runtime_error(fmt::format("cannot write '{}': {}", out.string(), msg));
    };
    for (const Member& m : members_) {
        zip_source_t* src = m.from_file ? zip_source_file(za, m.file.c_str(), 0, -1)
                                        : zip_source_buffer(za, m.bytes.data(), m.bytes.size(), 0);
        if (!src) abort_with(zip_strerror(za));
        const zip_int64_t idx = zip_file_add(za, m.name.c_str(), src, ZIP_FL_ENC_UTF_8 | ZIP_FL_OVERWRITE);
        if (idx < 0) { zip_source_free(src); abort_with(zip_strerror(za)); }
        zip_set_file_compression(za, static_cast<zip_uint64_t>(idx), compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, compress ? 1 : 0);
    }
    if (zip_close(za) != 0) abort_with(zip_strerror(za));
    file.commit();
}

// ------------------------------------------------------------------ reading
size_t NpyArray::size() const {
    return std::accumulate(shape.begin(), shape.end(), size_t(1), std::multiplies<size_t>());
}

std::vector<float> NpyArray::as_float() const {
    const size_t n = size();
    std::vector<float> out(n);
    if (dtype == "<f4") {
        if (n) std::memcpy(out.data(), data.data(), n * 4);
    } else if (dtype == "<f8") {
        for (size_t i = 0; i < n; ++i) { double v; std::memcpy(&v, data.data() + 8 * i, 8); out[i] = float(v); }
    } else if (dtype == "<f2") {
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, data.data() + 2 * i, 2);
            // IEEE-754 binary16 → binary32
            const uint32_t sign = uint32_t(h & 0x8000) << 16;
            uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
            if (exp == 0) {
                if (mant == 0) bits = sign;
                else {  // subnormal: renormalise
                    exp = 127 - 15 + 1;
                    while (!(mant & 0x400)) { mant <<= 1; --exp; }
                    mant &= 0x3ff;
                    bits = sign | (exp << 23) | (mant << 13);
                }
            } else if (exp == 31) {
                bits = sign | 0x7f800000u | (mant << 13);
            } else {
                bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
            }
            std::memcpy(&out[i], &bits, 4);
        }
    } else {
        throw std::runtime_error("array has dtype " + dtype + ", expected a float type (f2, f4, f8)");
    }
    return out;
}

std::vector<int64_t> NpyArray::as_int64() const {
    const size_t n = size();
    std::vector<int64_t> out(n);
    const char kind = dtype.size() >= 2 ? dtype[1] : '?';
    const size_t w = dtype_size(dtype);
    if ((kind != 'i' && kind != 'u') || (w != 1 && w != 2 && w != 4 && w != 8))
        throw std::runtime_error("array has dtype " + dtype + ", expected an integer type");
    for (size_t i = 0; i < n; ++i) {
        const unsigned char* p = data.data() + w * i;
        if (kind == 'i') {
            switch (w) {
                case 1: out[i] = int8_t(p[0]); break;
                case 2: { int16_t v; std::memcpy(&v, p, 2); out[i] = v; break; }
                case 4: { int32_t v; std::memcpy(&v, p, 4); out[i] = v; break; }
                default: { int64_t v; std::memcpy(&v, p, 8); out[i] = v; break; }
            }
        } else {
            switch (w) {
                case 1: out[i] = p[0]; break;
                case 2: { uint16_t v; std::memcpy(&v, p, 2); out[i] = v; break; }
                case 4: { uint32_t v; std::memcpy(&v, p, 4); out[i] = v; break; }
                default: { uint64_t v; std::memcpy(&v, p, 8); out[i] = int64_t(v); break; }
            }
        }
    }
    return out;
}

NpyArray parse_npy(const std::string& b, const std::string& what) {
    auto bad = [&](const std::string& why) { return std::runtime_error(fmt::format("{}: not a valid .npy array ({})", what, why)); };
    if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw bad("bad magic");
    const int major = static_cast<unsigned char>(b[6]);
    size_t hl, off;
    if (major == 1) { hl = uint8_t(b[8]) | (size_t(uint8_t(b[9])) << 8); off = 10; }
    else if (major == 2 || major == 3) {
        if (b.size() < 12) throw bad("truncated header");
        hl = uint8_t(b[8]) | (size_t(uint8_t(b[9])) << 8) | (size_t(uint8_t(b[10])) << 16) | (size_t(uint8_t(b[11])) << 24);
        off = 12;
    } else throw bad("unsupported version " + std::to_string(major));
    if (off + hl > b.size()) throw bad("truncated header");
    const std::string h = b.substr(off, hl);
    auto field = [&](const std::string& key) -> std::string {
        const size_t k = h.find("'" + key + "'");
        if (k == std::string::npos) throw bad("header lacks " + key);
        size_t v = h.find(':', k);
        if (v == std::string::npos) throw bad("header lacks value of " + key);
        ++v;
        while (v < h.size() && h[v] == ' ') ++v;
        return h.substr(v);
    };
    NpyArray a;
    {
        std::string d = field("descr");
        if (d.empty() || d[0] != '\'') throw bad("structured dtypes are not supported");
        const size_t e = d.find('\'', 1);
        if (e == std::string::npos) throw bad("bad descr");
        a.dtype = d.substr(1, e - 1);
        if (a.dtype.size() >= 2 && a.dtype[0] == '|') a.dtype[0] = '<';  // single-byte types
        if (a.dtype.size() < 3 || a.dtype[0] != '<') throw bad("dtype '" + a.dtype + "' is not little-endian numeric");
        if (a.dtype[1] != 'f' && a.dtype[1] != 'i' && a.dtype[1] != 'u') throw bad("unsupported dtype '" + a.dtype + "'");
    }
    if (field("fortran_order").rfind("True", 0) == 0) throw bad("fortran_order arrays are not supported");
    {
        std::string s = field("shape");
        if (s.empty() || s[0] != '(') throw bad("bad shape");
        const size_t e = s.find(')');
        if (e == std::string::npos) throw bad("bad shape");
        std::string inner = s.substr(1, e - 1);
        size_t p = 0;
        while (p < inner.size()) {
            while (p < inner.size() && (inner[p] == ' ' || inner[p] == ',')) ++p;
            if (p >= inner.size()) break;
            size_t q = p;
            while (q < inner.size() && std::isdigit(static_cast<unsigned char>(inner[q]))) ++q;
            if (q == p) throw bad("bad shape");
            unsigned long long d = 0;
            const auto [end, ec] = std::from_chars(inner.data() + p, inner.data() + q, d);
            if (ec != std::errc() || end != inner.data() + q) throw bad("shape dimension out of range");
            a.shape.push_back(size_t(d));
            p = q;
        }
    }
    // Item sizes numpy uses for these kinds (f2/f4/f8, i1..i8, u1..u8); anything else is rejected
    // here rather than dividing by a zero size below.
    static const char* const kSupported[] = {"<f2", "<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8"};
    if (std::find(std::begin(kSupported), std::end(kSupported), a.dtype) == std::end(kSupported))
        throw bad("unsupported dtype '" + a.dtype + "'");
    const size_t item = dtype_size(a.dtype);
    // Overflow-safe element count.
    size_t n = 1;
    for (size_t d : a.shape) {
        if (d != 0 && n > SIZE_MAX / d / item) throw bad("shape too large");
        n *= d;
    }
    const size_t need = n * item;
    if (b.size() - off - hl < need) throw bad(fmt::format("data truncated: {} bytes, expected {}", b.size() - off - hl, need));
    a.data.assign(b.begin() + long(off + hl), b.begin() + long(off + hl + need));
    return a;
}

NpzReader::NpzReader(const fs::path& path) : path_(path) {
    if (!fs::exists(path)) throw std::runtime_error(fmt::format("'{}': no such file", path.string()));
    if (fs::is_directory(path)) throw std::runtime_error(fmt::format("'{}' is a directory, expected an NPZ file", path.string()));
    int err = 0;
    zip_t* za = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!za) {
        std::string why;
        switch (err) {
            case ZIP_ER_NOZIP: why = "not a zip/NPZ archive"; break;
            case ZIP_ER_INCONS: why = "zip archive is inconsistent (truncated or corrupt)"; break;
            case ZIP_ER_OPEN: case ZIP_ER_READ: why = "cannot read file"; break;
            default: {
                zip_error_t ze;
                zip_error_init_with_code(&ze, err);
                why = zip_error_strerror(&ze);
                zip_error_fini(&ze);
            }
        }
        throw std::runtime_error(fmt::format("'{}': {}", path.string(), why));
    }
    zip_ = za;
}

NpzReader::~NpzReader() {
    if (zip_) zip_discard(static_cast<zip_t*>(zip_));
}

std::vector<std::string> NpzReader::members() const {
    std::vector<std::string> out;
    zip_t* za = static_cast<zip_t*>(zip_);
    const zip_int64_t n = zip_get_num_entries(za, 0);
    for (zip_int64_t i = 0; i < n; ++i)
        if (const char* nm = zip_get_name(za, zip_uint64_t(i), 0)) out.emplace_back(nm);
    return out;
}

bool NpzReader::has(const std::string& key) const {
    zip_t* za = static_cast<zip_t*>(zip_);
    return zip_name_locate(za, (key + ".npy").c_str(), 0) >= 0 || zip_name_locate(za, key.c_str(), 0) >= 0;
}

std::string NpzReader::read_member(const std::string& member) const {
    zip_t* za = static_cast<zip_t*>(zip_);
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat(za, member.c_str(), 0, &st) != 0)
        throw std::runtime_error(fmt::format("'{}': no member '{}'", path_.string(), member));
    // The member's declared size is checked before anything is allocated: against the cap, and
    // against its compressed size (deflate cannot expand beyond ~1032:1; a stored member is
    // exactly its size). Reading never goes past the declared size.
    if (!(st.valid & ZIP_STAT_SIZE))
        throw std::runtime_error(fmt::format("'{}': member '{}' does not declare its size", path_.string(), member));
    const uint64_t cap = max_member_bytes();
    if (st.size > cap)
        throw std::runtime_error(fmt::format("'{}': member '{}' declares {} bytes, more than the limit of {} MiB "
                                             "(PHASEMAP_MAX_MEMBER_MB raises it)", path_.string(), member, st.size, cap >> 20));
    if (st.valid & ZIP_STAT_COMP_SIZE) {
        const bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
        if (stored ? st.size != st.comp_size : st.size > st.comp_size * 1100 + 4096)
            throw std::runtime_error(fmt::format("'{}': member '{}' declares {} bytes from {} compressed bytes (corrupt or a zip bomb)",
                                                 path_.string(), member, st.size, st.comp_size));
    }
    zip_file_t* zf = zip_fopen(za, member.c_str(), 0);
    if (!zf) throw std::runtime_error(fmt::format("'{}': cannot open member '{}': {}", path_.string(), member, zip_strerror(za)));
    std::string out;
    try {
        out.reserve(size_t(st.size));
    } catch (const std::bad_alloc&) {
        zip_fclose(zf);
        throw std::runtime_error(fmt::format("'{}': member '{}' needs {} MiB of memory, which cannot be allocated", path_.string(),
                                             member, st.size >> 20));
    }
    char buf[1 << 16];
    zip_int64_t got;
    while ((got = zip_fread(zf, buf, sizeof buf)) > 0) {
        if (out.size() + size_t(got) > st.size) {
            zip_fclose(zf);
            throw std::runtime_error(fmt::format("'{}': member '{}' inflates beyond its declared {} bytes", path_.string(), member, st.size));
        }
        out.append(buf, size_t(got));
    }
    const bool bad = got < 0;
    std::string why = bad ? zip_file_strerror(zf) : "";
    zip_fclose(zf);
    if (bad) throw std::runtime_error(fmt::format("'{}': member '{}' is corrupt or truncated ({})", path_.string(), member, why));
    if ((st.valid & ZIP_STAT_SIZE) && out.size() != st.size)
        throw std::runtime_error(fmt::format("'{}': member '{}' is truncated", path_.string(), member));
    return out;
}

NpyArray NpzReader::array(const std::string& key) const {
    zip_t* za = static_cast<zip_t*>(zip_);
    const std::string member = zip_name_locate(za, (key + ".npy").c_str(), 0) >= 0 ? key + ".npy" : key;
    return parse_npy(read_member(member), fmt::format("'{}' member '{}'", path_.string(), member));
}

std::string NpzReader::bytes(const std::string& member) const { return read_member(member); }

}  // namespace phasemap::io
