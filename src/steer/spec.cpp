// Parsing of intervention declarations (include/phasemap/steer/spec.hpp).
#include "phasemap/steer/spec.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

#include "phasemap/io/npz.hpp"
#include "phasemap/metrics/option_domains.hpp"
#include "phasemap/steer/control_vector.hpp"

namespace phasemap::steer {

namespace fs = std::filesystem;
using capture::Intervention;
using capture::InterventionOp;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t p = 0;
    for (;;) {
        const size_t q = s.find(sep, p);
        out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
        if (q == std::string::npos) break;
        p = q + 1;
    }
    return out;
}

long long to_int(const std::string& s, const std::string& what) {
    long long v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
        throw std::invalid_argument(fmt::format("{}: '{}' is not an integer", what, s));
    return v;
}

double to_double(const std::string& s, const std::string& what) {
    try {
        size_t used = 0;
        const double v = std::stod(s, &used);
        if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument("");
        return v;
    } catch (...) {
        throw std::invalid_argument(fmt::format("{}: '{}' is not a number", what, s));
    }
}

int parse_block(const std::string& n, int n_layer, const std::string& what) {
    long long v = to_int(n, what);
    if (v < 0) v += n_layer;
    if (v < 0 || v >= n_layer)
        throw std::invalid_argument(fmt::format("{}: layer block:{} is out of range (the model has blocks 0..{})", what, n, n_layer - 1));
    return int(v);
}

void parse_range(const std::string& r, Intervention& iv, const std::string& what) {
    const size_t dash = r.find('-');
    if (dash == std::string::npos) {
        iv.t_begin = int(to_int(r, what));
        iv.t_end = iv.t_begin + 1;
    } else {
        iv.t_begin = int(to_int(r.substr(0, dash), what));
        const std::string b = r.substr(dash + 1);
        iv.t_end = b.empty() ? INT_MAX : int(to_int(b, what)) + 1;
    }
    if (iv.t_begin < 0 || iv.t_end <= iv.t_begin) throw std::invalid_argument(fmt::format("{}: empty or negative token range '{}'", what, r));
}

bool parse_op(std::string op, Intervention& iv) {
    if (op.rfind("random-", 0) == 0) {
        iv.random_direction = true;
        op = op.substr(7);
    }
    if (op == "add") iv.op = InterventionOp::add;
    else if (op == "scale") iv.op = InterventionOp::scale;
    else if (op == "clamp") iv.op = InterventionOp::clamp_norm;
    else if (op == "damp") iv.op = InterventionOp::damp;
    else if (op == "project-out" || op == "project_out") iv.op = InterventionOp::project_out;
    else if (op == "noise") iv.op = InterventionOp::noise;
    else return false;
    return true;
}

}  // namespace

FileScale parse_file_scale(const std::string& spec, const std::string& option) {
    const std::string what = fmt::format("{} '{}'", option, spec);
    FileScale out;
    const size_t c = spec.rfind(':');
    out.path = spec.substr(0, c);
    if (out.path.empty()) throw std::invalid_argument(what + ": the file name is empty (FILE[:SCALE])");
    if (c == std::string::npos) return out;
    const std::string s = spec.substr(c + 1);
    const char* hint = " (FILE[:SCALE]: the text after the last ':' is the scale; a file name with ':' needs an explicit scale, e.g. 'a:b.gguf:1')";
    if (s.empty()) throw std::invalid_argument(fmt::format("{}: the scale after ':' is empty{}", what, hint));
    float v = 0.0f;
    const char* b = s.data() + (s[0] == '+' && s.size() > 1 && s[1] != '-' ? 1 : 0);  // from_chars takes no '+'
    const auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
    if (ec == std::errc::result_out_of_range)
        throw std::invalid_argument(fmt::format("{}: the scale '{}' is out of float range", what, s));
    if (ec != std::errc() || p != s.data() + s.size())
        throw std::invalid_argument(fmt::format("{}: the scale '{}' is not a number{}", what, s, hint));
    if (const std::string bad = opt::domain_problem(v, opt::kScale); !bad.empty())
        throw std::invalid_argument(fmt::format("{}: the scale {}", what, bad));
    out.scale = v;
    return out;
}

std::vector<float> read_vector_file(const std::string& path, int block) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw std::invalid_argument(fmt::format("vector file '{}' does not exist", path));
    const std::string ext = fs::path(path).extension().string();
    if (ext == ".gguf") {
        const ControlVector cv = read_control_vector(path);
        const auto it = cv.directions.find(block);
        if (it == cv.directions.end())
            throw std::invalid_argument(fmt::format("control vector '{}' has no direction.{} for block:{}", path, block, block));
        return it->second;
    }
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    if (ext == ".npy") {
        const io::NpyArray a = io::parse_npy(ss.str(), fmt::format("vector file '{}'", path));
        size_t non1 = 0;
        for (size_t x : a.shape) non1 += x != 1;
        if (non1 > 1) throw std::invalid_argument(fmt::format("vector file '{}' is not 1-d (shape has {} dimensions > 1)", path, non1));
        return a.as_float();
    }
    std::vector<float> v;
    std::string tok;
    while (ss >> tok) {
        if (!tok.empty() && tok.back() == ',') tok.pop_back();
        if (tok.empty()) continue;
        v.push_back(float(to_double(tok, fmt::format("vector file '{}'", path))));
    }
    if (v.empty()) throw std::invalid_argument(fmt::format("vector file '{}' holds no number", path));
    return v;
}

ParsedIntervention parse_intervention_spec(const std::string& spec, int n_layer) {
    const std::string what = fmt::format("intervention '{}'", spec);
    ParsedIntervention out;
    Intervention& iv = out.iv;
    iv.label = spec;
    std::string body = spec, quals;
    if (const size_t at = spec.find('@'); at != std::string::npos) {
        body = spec.substr(0, at);
        quals = spec.substr(at + 1);
    }
    const auto f = split(body, ':');
    if (f.size() < 3 || f[1] != "block")
        throw std::invalid_argument(fmt::format("{}: expected OP:block:N[:ARG...] (e.g. add:block:3:vec.npy:2.0)", what));
    if (!parse_op(f[0], iv))
        throw std::invalid_argument(fmt::format("{}: unknown operation '{}' (add, scale, clamp, damp, project-out, noise, random-add, random-project-out)", what, f[0]));
    iv.block = parse_block(f[2], n_layer, what);
    const std::vector<std::string> args(f.begin() + 3, f.end());
    if (capture::op_takes_vector(iv.op)) {
        if (args.empty() || args.size() > 2) throw std::invalid_argument(fmt::format("{}: expected {}:block:N:VECTOR_FILE[:STRENGTH]", what, f[0]));
        iv.vec = read_vector_file(args[0], iv.block);
        iv.strength = args.size() == 2 ? to_double(args[1], what) : 1.0;
    } else {
        if (args.size() != 1) throw std::invalid_argument(fmt::format("{}: expected {}:block:N:VALUE", what, f[0]));
        iv.strength = to_double(args[0], what);
    }
    if (!quals.empty())
        for (const std::string& q : split(quals, ',')) {
            if (q == "prefill") iv.prefill = true;
            else if (q.rfind("t=", 0) == 0) parse_range(q.substr(2), iv, what);
            else if (q.rfind("seed=", 0) == 0) iv.seed = uint64_t(to_int(q.substr(5), what));
            else if (q.rfind("prompts=", 0) == 0) {
                for (const auto& p : split(q.substr(8), '+')) {
                    const long long k = to_int(p, what);
                    if (k < 0) throw std::invalid_argument(fmt::format("{}: negative prompt index {}", what, k));
                    out.prompts.push_back(int(k));
                }
            } else throw std::invalid_argument(fmt::format("{}: unknown qualifier '{}' (t=A-B, prefill, seed=N, prompts=I+J)", what, q));
        }
    return out;
}

std::vector<ParsedIntervention> parse_intervention_file(const std::string& path, int n_layer) {
    toml::table tbl;
    try {
        tbl = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        throw std::invalid_argument(fmt::format("intervention file '{}': {}", path, e.description()));
    }
    const toml::array* arr = tbl["intervention"].as_array();
    if (!arr || arr->empty()) throw std::invalid_argument(fmt::format("intervention file '{}' has no [[intervention]] table", path));
    const fs::path dir = fs::path(path).parent_path();
    std::vector<ParsedIntervention> out;
    size_t k = 0;
    for (const auto& node : *arr) {
        ++k;
        const std::string what = fmt::format("intervention file '{}', entry {}", path, k);
        const toml::table* t = node.as_table();
        if (!t) throw std::invalid_argument(what + ": not a table");
        for (const auto& [key, val] : *t) {
            static const char* known[] = {"op", "layer", "vector", "strength", "t", "prefill", "seed", "random", "prompts"};
            if (std::none_of(std::begin(known), std::end(known), [&](const char* x) { return key.str() == x; }))
                throw std::invalid_argument(fmt::format("{}: unknown key '{}'", what, key.str()));
        }
        ParsedIntervention p;
        Intervention& iv = p.iv;
        const auto op = (*t)["op"].value<std::string>();
        if (!op || !parse_op(*op, iv)) throw std::invalid_argument(what + ": missing or unknown 'op'");
        if ((*t)["random"].value_or(false)) iv.random_direction = true;
        const auto layer = (*t)["layer"].value<std::string>();
        if (!layer || layer->rfind("block:", 0) != 0) throw std::invalid_argument(what + ": 'layer' must be \"block:N\"");
        iv.block = parse_block(layer->substr(6), n_layer, what);
        if (const auto v = (*t)["vector"].value<std::string>()) {
            fs::path vp(*v);
            if (vp.is_relative()) vp = dir / vp;
            iv.vec = read_vector_file(vp.string(), iv.block);
        } else if (capture::op_takes_vector(iv.op)) {
            throw std::invalid_argument(what + ": " + *op + " needs 'vector'");
        }
        if (const auto s = (*t)["strength"].value<double>()) iv.strength = *s;
        if (const auto r = (*t)["t"].value<std::string>()) parse_range(*r, iv, what);
        iv.prefill = (*t)["prefill"].value_or(false);
        iv.seed = uint64_t((*t)["seed"].value_or(int64_t(0)));
        if (const toml::array* pr = (*t)["prompts"].as_array())
            for (const auto& x : *pr) {
                const auto i = x.value<int64_t>();
                if (!i || *i < 0) throw std::invalid_argument(what + ": 'prompts' must hold indices ≥ 0");
                p.prompts.push_back(int(*i));
            }
        iv.label = fmt::format("{}#{}", fs::path(path).filename().string(), k);
        out.push_back(std::move(p));
    }
    return out;
}

}  // namespace phasemap::steer
