// The grid's identity in the results DB (include/phasemap/panel/manifest.hpp): model and adapter
// file hashes (cached per file for the process) and the hash of the whole grid.
#include <map>
#include <mutex>

#include "phasemap/io/run_file.hpp"
#include "phasemap/panel/manifest.hpp"

namespace phasemap::panel {

namespace {

// sha256 of a file, cached per file for the process.
std::string cached_file_sha256(const fs::path& path) {
    static std::mutex mu;
    static std::map<std::string, std::string> cache;  // path → sha256
    const std::string key = fs::weakly_canonical(path).string();
    std::lock_guard lk(mu);
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, io::file_sha256(path)).first;
    return it->second;
}

}  // namespace

std::vector<std::string> model_hashes(const Manifest& m) {
    std::vector<std::string> out;
    for (const auto& me : m.models) out.push_back(cached_file_sha256(me.path));
    return out;
}

std::vector<std::vector<std::string>> adapter_hashes(const Manifest& m) {
    std::vector<std::vector<std::string>> out;
    for (const auto& me : m.models) {
        out.emplace_back();
        for (const auto& a : me.adapters) out.back().push_back(cached_file_sha256(a.path));
    }
    return out;
}

std::string grid_hash(const Manifest& m, const std::vector<std::string>& sha, const std::vector<std::vector<std::string>>& asha) {
    std::string s = "phasemap-grid-v1\n";
    for (size_t i = 0; i < m.models.size(); ++i) s += m.models[i].label + "\t" + sha[i] + "\n";
    const std::vector<std::string> none;
    for (const auto& p : expand_grid(m)) s += run_id(m, p, sha[p.model], asha.empty() ? none : asha[p.model]) + "\n";
    return io::sha256_hex(s);
}

}  // namespace phasemap::panel
