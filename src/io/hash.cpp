#include <fmt/core.h>
#include <openssl/evp.h>

#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "phasemap/io/run_file.hpp"

namespace phasemap::io {

std::string file_sha256(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw std::runtime_error(fmt::format("cannot read '{}'", p.string()));
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 16);  // 64 KiB: stays in the allocator's small-chunk pools (no mmap per call)
    while (f) {
        f.read(buf.data(), std::streamsize(buf.size()));
        if (f.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), size_t(f.gcount()));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &n);
    return hex_digest(md, n);
}

std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
    return hex_digest(md, n);
}

std::string hex_digest(const unsigned char* md, unsigned int n) {
    static const char* const kHex = "0123456789abcdef";
    std::string hex(size_t(n) * 2, '0');
    for (unsigned i = 0; i < n; ++i) {
        hex[2 * i] = kHex[md[i] >> 4];
        hex[2 * i + 1] = kHex[md[i] & 15];
    }
    return hex;
}

}  // namespace phasemap::io
