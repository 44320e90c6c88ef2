// Parser contracts checked under fuzzing (see harness.hpp).
#include "harness.hpp"

#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <typeinfo>

#include "phasemap/capture/layers.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/io/run_file.hpp"
#ifdef PM_FUZZ_PANEL
#include "phasemap/panel/manifest.hpp"
#include "phasemap/panel/prompts.hpp"
#endif
#ifdef PM_FUZZ_CVEC
#include "phasemap/steer/control_vector.hpp"
#endif
#ifdef PM_FUZZ_AUDIT
#include "phasemap/audit/hypotheses.hpp"
#endif

namespace pmfuzz {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void violated(const char* target, const std::string& what) {
    std::fprintf(stderr, "pmfuzz %s: contract violated: %s\n", target, what.c_str());
    std::abort();
}

// Runs `body`; the only acceptable failure is an exception of type Allowed with a message.
template <class Allowed, class F>
void expect_clean(const char* target, F&& body) {
    try {
        body();
    } catch (const Allowed& e) {
        if (std::string(e.what()).empty()) violated(target, "exception with an empty message");
    } catch (const std::exception& e) {
        violated(target, std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
    } catch (...) {
        violated(target, "non-standard exception");
    }
}

// One scratch file per process (libFuzzer runs inputs sequentially in a process).
const fs::path& scratch(const char* tag) {
    static const fs::path dir = [] {
        const char* t = std::getenv("TMPDIR");
        fs::path d = fs::path(t && *t ? t : "/tmp") / ("phasemap-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(d);
        return d;
    }();
    static thread_local fs::path p;
    p = dir / tag;
    return p;
}

void write_bytes(const fs::path& p, const uint8_t* data, size_t size) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
    if (!f) violated("io", "cannot write scratch file " + p.string());
}

void check_array(const char* target, const phasemap::io::NpyArray& a) {
    size_t item = 0;
    if (a.dtype == "<f2" || a.dtype == "<i2" || a.dtype == "<u2") item = 2;
    else if (a.dtype == "<f4" || a.dtype == "<i4" || a.dtype == "<u4") item = 4;
    else if (a.dtype == "<f8" || a.dtype == "<i8" || a.dtype == "<u8") item = 8;
    else if (a.dtype == "<i1" || a.dtype == "<u1") item = 1;
    else violated(target, "accepted dtype '" + a.dtype + "'");
    if (a.data.size() != a.size() * item) violated(target, "data size does not match shape × item size");
    // The conversions either work or throw runtime_error, never read out of bounds.
    expect_clean<std::runtime_error>(target, [&] {
        auto f = a.as_float();
        if (f.size() != a.size()) violated(target, "as_float size");
    });
    expect_clean<std::runtime_error>(target, [&] {
        auto v = a.as_int64();
        if (v.size() != a.size()) violated(target, "as_int64 size");
    });
}

}  // namespace

int fuzz_npy(const uint8_t* data, size_t size) {
    const std::string b(reinterpret_cast<const char*>(data), size);
    expect_clean<std::runtime_error>("npy", [&] { check_array("npy", phasemap::io::parse_npy(b, "fuzz")); });
    return 0;
}

int fuzz_npz(const uint8_t* data, size_t size) {
    const fs::path& p = scratch("in.npz");
    write_bytes(p, data, size);
    expect_clean<std::runtime_error>("npz", [&] {
        phasemap::io::NpzReader z(p);
        for (const std::string& m : z.members()) {
            if (!z.has(m)) violated("npz", "listed member '" + m + "' not found by has()");
            expect_clean<std::runtime_error>("npz", [&] { (void)z.bytes(m); });
            expect_clean<std::runtime_error>("npz", [&] { check_array("npz", z.array(m)); });
        }
        expect_clean<std::runtime_error>("npz", [&] { (void)z.array("hidden_states"); });
    });
    return 0;
}

int fuzz_layers(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // n_layer in -1..253 (0 and -1 must be rejected cleanly).
    const int n_layer = int(data[0]) - 2;
    const std::string spec(reinterpret_cast<const char*>(data + 1), size - 1);
    expect_clean<std::invalid_argument>("layers", [&] {
        const auto v = phasemap::resolve_layers(spec, n_layer);
        std::set<std::string> labels;
        for (const auto& l : v) {
            if (!labels.insert(l.label).second) violated("layers", "duplicate label " + l.label);
            if (l.tensor.empty()) violated("layers", "empty tensor name for " + l.label);
            if (l.hf_index < -1 || l.hf_index > n_layer) violated("layers", "hf_index out of range for " + l.label);
            if (l.label.rfind("hf:", 0) == 0 && l.hf_index != std::stoi(l.label.substr(3)))
                violated("layers", "hf label and index disagree: " + l.label);
            if (l.label.rfind("block:", 0) == 0 && std::stoi(l.label.substr(6)) >= n_layer)
                violated("layers", "block index out of range: " + l.label);
        }
    });
    return 0;
}

int fuzz_run_file(const uint8_t* data, size_t size) {
    const std::string in(reinterpret_cast<const char*>(data), size);
    const fs::path& p = scratch("run.npz");
    std::error_code ec;
    fs::remove(p, ec);
    int err = 0;
    zip_t* za = zip_open(p.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!za) violated("run_file", "cannot create scratch zip");
    std::vector<std::string> chunks;
    const std::string sep = kMemberSeparator;
    for (size_t pos = 0; chunks.size() < kRunMembers.size();) {
        const size_t q = in.find(sep, pos);
        chunks.push_back(in.substr(pos, q == std::string::npos ? std::string::npos : q - pos));
        if (q == std::string::npos) break;
        pos = q + sep.size();
    }
    for (size_t i = 0; i < chunks.size(); ++i) {
        if (chunks[i].empty()) continue;
        zip_source_t* src = zip_source_buffer(za, chunks[i].data(), chunks[i].size(), 0);
        const zip_int64_t idx = src ? zip_file_add(za, kRunMembers[i].c_str(), src, ZIP_FL_OVERWRITE) : -1;
        if (idx < 0) violated("run_file", "zip_file_add");
        // Stored members (deflate is covered by fuzz_npz's seeds; here speed matters).
        zip_set_file_compression(za, zip_uint64_t(idx), ZIP_CM_STORE, 0);
    }
    if (zip_close(za) != 0) violated("run_file", "zip_close");
    if (!fs::exists(p)) return 0;  // no member: libzip writes no file
    expect_clean<std::runtime_error>("run_file", [&] {
        const auto r = phasemap::io::load_run_npz(p);
        if (r.states.size() != r.tokens * r.layers * r.dim) violated("run_file", "states size != T·L·d");
        if (r.layer_names.size() != r.layers) violated("run_file", "layer_names size != L");
        if (!r.token_ids.empty() && r.token_ids.size() != r.tokens) violated("run_file", "token_ids size != T");
        if (!r.stats.empty() && r.stats.size() != r.tokens) violated("run_file", "stats size != T");
        if (r.stats.empty() != r.stats_source.empty()) violated("run_file", "stats_source inconsistent");
    });
    return 0;
}

#ifdef PM_FUZZ_PANEL
int fuzz_manifest(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    expect_clean<phasemap::panel::ManifestError>("manifest", [&] {
        const auto m = phasemap::panel::parse_manifest(text, "/nonexistent/fuzz/manifest.toml", false);
        (void)phasemap::panel::expand_grid(m);
    });
    return 0;
}
#endif

#ifdef PM_FUZZ_PANEL
int fuzz_prompts(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    expect_clean<std::invalid_argument>("prompts", [&] {
        const auto rows = phasemap::panel::parse_prompt_csv(text, "fuzz.csv");
        if (rows.empty()) violated("prompts", "no rows returned without an error");
        std::map<std::string, int64_t> next;  // indices count per category in file order
        for (const auto& r : rows) {
            if (r.category.empty() || r.text.empty()) violated("prompts", "empty category or prompt accepted");
            if (r.category.find_first_of("\n,") != std::string::npos)
                violated("prompts", "category holds a comma or newline: " + r.category);
            if (r.index != next[r.category]++) violated("prompts", "index out of order in category " + r.category);
        }
    });
    return 0;
}
#endif

#ifdef PM_FUZZ_CVEC
int fuzz_control_vector(const uint8_t* data, size_t size) {
    const fs::path& p = scratch("in.gguf");
    write_bytes(p, data, size);
    phasemap::steer::ControlVector cv;
    bool read = false;
    expect_clean<std::runtime_error>("control_vector", [&] {
        cv = phasemap::steer::read_control_vector(p);
        read = true;
    });
    if (!read) return 0;
    if (cv.directions.empty()) violated("control_vector", "no direction and no error");
    if (cv.n_embd <= 0) violated("control_vector", "n_embd " + std::to_string(cv.n_embd) + " accepted");
    int max_n = 0;
    for (const auto& [n, v] : cv.directions) {
        if (n < 1) violated("control_vector", "direction." + std::to_string(n) + " accepted");
        if (int64_t(v.size()) != cv.n_embd)
            violated("control_vector", "direction." + std::to_string(n) + " has " + std::to_string(v.size()) +
                                           " values, n_embd " + std::to_string(cv.n_embd));
        max_n = std::max(max_n, n);
    }
    // What the steering path does with a vector: check it against the model, then flatten it.
    expect_clean<std::invalid_argument>("control_vector", [&] {
        phasemap::steer::check_control_vector(cv, kCvecModel.arch, kCvecModel.n_layer, kCvecModel.n_embd);
        if (max_n >= kCvecModel.n_layer) violated("control_vector", "direction beyond the model's blocks passed the check");
        if (cv.flat(0.5f).size() != size_t(kCvecModel.n_embd) * size_t(max_n)) violated("control_vector", "flat() size");
    });
    return 0;
}
#endif

#ifdef PM_FUZZ_AUDIT
int fuzz_hypotheses(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    expect_clean<std::invalid_argument>("hypotheses", [&] { (void)phasemap::audit::parse_hypotheses(text, "fuzz"); });
    return 0;
}
#endif

int run_target(const std::string& name, const uint8_t* data, size_t size) {
#ifdef PM_FUZZ_PANEL
    if (name == "manifest") return fuzz_manifest(data, size);
    if (name == "prompts") return fuzz_prompts(data, size);
#endif
#ifdef PM_FUZZ_CVEC
    if (name == "control_vector") return fuzz_control_vector(data, size);
#endif
#ifdef PM_FUZZ_AUDIT
    if (name == "hypotheses") return fuzz_hypotheses(data, size);
#endif
    if (name == "npy") return fuzz_npy(data, size);
    if (name == "npz") return fuzz_npz(data, size);
    if (name == "layers") return fuzz_layers(data, size);
    if (name == "run_file") return fuzz_run_file(data, size);
    throw std::invalid_argument("unknown fuzz target " + name);
}

}  // namespace pmfuzz
