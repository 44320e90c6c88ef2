// Panel manifest parsing (toml++), grid expansion and run identity.
#include "phasemap/io/run_file.hpp"
#include "phasemap/panel/manifest.hpp"

#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "phasemap/io/files.hpp"
#include "phasemap/capture/layers.hpp"
#include "phasemap/metrics/option_domains.hpp"
#include "phasemap/panel/prompts.hpp"

namespace phasemap::panel {

namespace {

std::string join_problems(const std::vector<std::string>& p) {
    std::string s = p.size() == 1 ? "manifest problem:\n" : fmt::format("{} manifest problems:\n", p.size());
    for (const auto& x : p) s += "  " + x + "\n";
    if (!s.empty()) s.pop_back();
    return s;
}

// Collects problems with their source positions.
struct Ctx {
    fs::path file;
    std::vector<std::pair<std::pair<uint32_t, uint32_t>, std::string>> problems;

    void add(const toml::source_region& r, const std::string& msg) {
        problems.push_back({{r.begin.line, r.begin.column}, msg});
    }
    void add(const toml::node& n, const std::string& msg) { add(n.source(), msg); }
    std::vector<std::string> sorted() const {
        auto p = problems;
        std::stable_sort(p.begin(), p.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        std::vector<std::string> o;
        for (const auto& [pos, m] : p) o.push_back(fmt::format("{}:{}:{}: {}", file.string(), pos.first, pos.second, m));
        return o;
    }
};

void check_keys(Ctx& c, const toml::table& t, const std::set<std::string>& allowed, const std::string& where) {
    for (auto&& [k, v] : t)
        if (!allowed.count(std::string(k.str()))) {
            std::string list;
            for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
            c.add(k.source(), fmt::format("unknown key '{}' in {} (known: {})", k.str(), where, list));
        }
}

const char* type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a float";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        default: return "a date/time";
    }
}

bool get_string(Ctx& c, const toml::node& n, const std::string& key, std::string& out) {
    if (auto s = n.as_string()) { out = s->get(); return true; }
    c.add(n, fmt::format("'{}' must be a string, not {}", key, type_name(n)));
    return false;
}
bool get_bool(Ctx& c, const toml::node& n, const std::string& key, bool& out) {
    if (auto b = n.as_boolean()) { out = b->get(); return true; }
    c.add(n, fmt::format("'{}' must be a boolean (true/false), not {}", key, type_name(n)));
    return false;
}
bool get_int(Ctx& c, const toml::node& n, const std::string& key, int64_t& out) {
    if (auto i = n.as_integer()) { out = i->get(); return true; }
    c.add(n, fmt::format("'{}' must be an integer, not {}", key, type_name(n)));
    return false;
}
bool get_double(Ctx& c, const toml::node& n, const std::string& key, double& out) {
    if (auto i = n.as_integer()) { out = double(i->get()); return true; }
    if (auto f = n.as_floating_point()) { out = f->get(); return true; }
    c.add(n, fmt::format("'{}' must be a number, not {}", key, type_name(n)));
    return false;
}
// A list (an array, or one scalar taken as a one-element list).
template <class T, class F>
bool get_list(Ctx& c, const toml::node& n, const std::string& key, std::vector<T>& out, F one) {
    std::vector<T> v;
    bool ok = true;
    if (auto a = n.as_array()) {
        if (a->empty()) { c.add(n, fmt::format("'{}' must not be empty", key)); return false; }
        for (const auto& e : *a) {
            T x{};
            if (one(c, e, key + " element", x)) v.push_back(x);
            else ok = false;
        }
    } else {
        T x{};
        if (one(c, n, key, x)) v.push_back(x);
        else ok = false;
    }
    if (ok) out = v;
    return ok;
}

const std::set<std::string> kGenKeys{"temperatures", "n_predict", "seeds", "chat", "top_k", "top_p", "layers", "precision", "n_ctx"};

void parse_generation(Ctx& c, const toml::table& t, GenerationSettings& g, const std::string& where) {
    check_keys(c, t, kGenKeys, where);
    if (auto n = t.get("temperatures")) {
        if (get_list<double>(c, *n, "temperatures", g.temperatures, get_double))
            for (double x : g.temperatures)
                if (auto p = opt::domain_problem(x, opt::kTemperature); !p.empty()) c.add(*n, "temperature " + p);
    }
    if (auto n = t.get("n_predict")) {
        if (get_list<int64_t>(c, *n, "n_predict", g.n_predict, get_int))
            for (int64_t x : g.n_predict) {
                if (x < 1) c.add(*n, fmt::format("token budget n_predict {} must be at least 1", x));
                else if (auto p = opt::domain_problem(double(x), opt::kNPredict); !p.empty()) c.add(*n, "token budget n_predict " + p);
            }
    }
    if (auto n = t.get("seeds")) {
        std::vector<int64_t> s;
        if (get_list<int64_t>(c, *n, "seeds", s, get_int)) {
            g.seeds.clear();
            for (int64_t x : s) {
                if (x < 0) c.add(*n, fmt::format("seed {} must not be negative", x));
                g.seeds.push_back(uint64_t(x));
            }
        }
    }
    if (auto n = t.get("chat")) get_bool(c, *n, "chat", g.chat);
    if (auto n = t.get("top_k")) {
        if (get_int(c, *n, "top_k", g.top_k) && g.top_k < 0) c.add(*n, "'top_k' must be ≥ 0 (0 = off)");
    }
    if (auto n = t.get("top_p")) {
        if (get_double(c, *n, "top_p", g.top_p))
            if (auto p = opt::domain_problem(g.top_p, opt::kTopP); !p.empty()) c.add(*n, "'top_p': " + p);
    }
    if (auto n = t.get("layers")) {
        if (get_string(c, *n, "layers", g.layers)) {
            if (g.layers.empty() || g.layers == "none") c.add(*n, "'layers' must capture at least one layer (the metrics need states)");
            else {
                try { (void)resolve_layers(g.layers, 100000); } catch (const std::exception& e) { c.add(*n, e.what()); }
            }
        }
    }
    if (auto n = t.get("precision")) {
        if (get_string(c, *n, "precision", g.precision) && g.precision != "exact" && g.precision != "fast")
            c.add(*n, fmt::format("'precision' must be \"exact\" or \"fast\", not \"{}\"", g.precision));
    }
    if (auto n = t.get("n_ctx")) {
        if (get_int(c, *n, "n_ctx", g.n_ctx) && g.n_ctx < 0) c.add(*n, "'n_ctx' must be ≥ 0 (0 = automatic)");
        else if (auto p = opt::domain_problem(double(g.n_ctx), opt::kContext); !p.empty()) c.add(*n, "'n_ctx': " + p);
    }
}

void parse_metrics(Ctx& c, const toml::table& t, Manifest& m) {
    check_keys(c, t, {"norms", "layer", "curvature", "mad_k", "ct_clip", "ct_clip_k", "late_window", "collapse_threshold",
                      "regime_cuts", "layer_axis", "collapse_top1", "rivalry_margin", "diffuse_entropy", "shuffles",
                      "control_seed", "include_embedding"},
               "[metrics]");
    auto& o = m.analysis;
    if (auto n = t.get("norms")) {
        if (get_list<std::string>(c, *n, "norms", m.norms, get_string)) {
            std::set<std::string> seen;
            for (const auto& x : m.norms) {
                if (!metrics::parse_norm_mode(x)) c.add(*n, fmt::format("unknown normalisation '{}' (use raw or clipped_mad)", x));
                if (!seen.insert(x).second) c.add(*n, fmt::format("normalisation '{}' is listed twice", x));
            }
        }
    }
    if (auto n = t.get("layer")) {
        if (auto i = n->as_integer()) m.metric_layer = std::to_string(i->get());
        else get_string(c, *n, "layer", m.metric_layer);
    }
    if (auto n = t.get("curvature")) {
        std::string s;
        if (get_string(c, *n, "curvature", s)) {
            if (auto cv = metrics::parse_curvature(s)) o.token.curvature = *cv;
            else c.add(*n, fmt::format("unknown curvature '{}' (use one_minus_cos, angle or second_diff)", s));
        }
    }
    if (auto n = t.get("mad_k")) get_double(c, *n, "mad_k", o.token.mad_k);
    if (auto n = t.get("ct_clip")) get_bool(c, *n, "ct_clip", o.token.ct_clip);
    if (auto n = t.get("ct_clip_k")) get_double(c, *n, "ct_clip_k", o.token.ct_clip_k);
    if (auto n = t.get("late_window")) get_double(c, *n, "late_window", o.token.late_window);
    if (auto n = t.get("collapse_threshold")) get_double(c, *n, "collapse_threshold", o.token.collapse_threshold);
    if (auto n = t.get("regime_cuts")) {
        std::vector<double> v;
        if (get_list<double>(c, *n, "regime_cuts", v, get_double)) {
            if (v.size() != 3) c.add(*n, "'regime_cuts' must hold three ascending numbers");
            else o.token.regime_cuts = {v[0], v[1], v[2]};
        }
    }
    if (auto n = t.get("layer_axis")) get_bool(c, *n, "layer_axis", o.layer_axis);
    if (auto n = t.get("include_embedding")) get_bool(c, *n, "include_embedding", m.include_embedding);
    if (auto n = t.get("collapse_top1")) get_double(c, *n, "collapse_top1", o.states.collapse_top1);
    if (auto n = t.get("rivalry_margin")) get_double(c, *n, "rivalry_margin", o.states.rivalry_margin);
    if (auto n = t.get("diffuse_entropy")) get_double(c, *n, "diffuse_entropy", o.states.diffuse_entropy);
    if (auto n = t.get("shuffles")) {
        int64_t k = 0;
        if (get_int(c, *n, "shuffles", k)) {
            if (k < 0) c.add(*n, "'shuffles' must be ≥ 0");
            else o.controls.shuffles = size_t(k);
        }
    }
    if (auto n = t.get("control_seed")) {
        int64_t k = 0;
        if (get_int(c, *n, "control_seed", k)) o.controls.seed = uint64_t(k);
    }
    try {
        o.validate();
    } catch (const std::exception& e) {
        c.add(t.source(), std::string("[metrics]: ") + e.what());
    }
}

// adapters = [{ path = "a.gguf", scale = 1.0 }, ...] (a single table is taken as a list of one).
void parse_adapters(Ctx& c, const toml::node& n, ModelEntry& me, const fs::path& base, bool check_files) {
    std::vector<const toml::table*> tables;
    if (auto t = n.as_table()) tables.push_back(t);
    else if (auto a = n.as_array()) {
        for (const auto& e : *a) {
            if (auto t = e.as_table()) tables.push_back(t);
            else c.add(e, fmt::format("each adapter must be a table {{ path = \"adapter.gguf\", scale = 1.0 }}, not {}", type_name(e)));
        }
    } else {
        c.add(n, fmt::format("'adapters' must be an array of tables [{{ path = \"adapter.gguf\", scale = 1.0 }}], not {}", type_name(n)));
        return;
    }
    for (const toml::table* t : tables) {
        check_keys(c, *t, {"path", "scale"}, "an adapter");
        AdapterEntry ae;
        if (auto p = t->get("path")) {
            std::string s;
            if (get_string(c, *p, "path", s)) {
                if (s.empty()) c.add(*p, "adapter 'path' must not be empty");
                else {
                    ae.path = fs::path(s).is_absolute() ? fs::path(s) : base / s;
                    std::error_code ec;
                    if (check_files && !fs::is_regular_file(ae.path, ec))
                        c.add(*p, fmt::format("adapter file '{}' does not exist", ae.path.string()));
                }
            }
        } else c.add(t->source(), "adapter: missing 'path'");
        if (auto s = t->get("scale")) {
            if (get_double(c, *s, "scale", ae.scale) && !std::isfinite(ae.scale)) c.add(*s, "adapter 'scale' must be a finite number");
        }
        me.adapters.push_back(std::move(ae));
    }
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void parse_prompt_set(Ctx& c, const toml::table& t, Manifest& m, const fs::path& base, size_t idx) {
    const std::string where = fmt::format("[[prompts]] #{}", idx + 1);
    check_keys(c, t, {"builtin", "file", "categories", "limit"}, where);
    std::string builtin, file;
    const toml::node* bn = t.get("builtin");
    const toml::node* fn = t.get("file");
    if (bn) get_string(c, *bn, "builtin", builtin);
    if (fn) get_string(c, *fn, "file", file);
    if ((bn != nullptr) == (fn != nullptr)) {
        c.add(t.source(), where + ": give exactly one of 'builtin' (a built-in panel) or 'file' (a category,prompt CSV)");
        return;
    }
    std::vector<Prompt> ps;
    if (bn) {
        if (builtin.empty()) return;
        const auto names = builtin_panel_names();
        if (std::find(names.begin(), names.end(), builtin) == names.end()) {
            std::string list;
            for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
            c.add(*bn, fmt::format("unknown built-in panel '{}' (built-in: {})", builtin, list));
            return;
        }
        ps = parse_prompt_csv(builtin_panel_csv(builtin), "builtin:" + builtin);
    } else {
        if (file.empty()) return;
        fs::path p = fs::path(file).is_absolute() ? fs::path(file) : base / file;
        std::string text;
        try { text = read_file(p); } catch (const std::exception&) {
            c.add(*fn, fmt::format("cannot read prompt file '{}'", p.string()));
            return;
        }
        try {
            ps = parse_prompt_csv(text, p.string());
        } catch (const std::exception& e) {
            c.add(*fn, e.what());
            return;
        }
    }
    if (auto n = t.get("categories")) {
        std::vector<std::string> cats;
        if (get_list<std::string>(c, *n, "categories", cats, get_string)) {
            std::set<std::string> have;
            for (const auto& p : ps) have.insert(p.category);
            for (const auto& x : cats)
                if (!have.count(x)) {
                    std::string list;
                    for (const auto& h : have) list += (list.empty() ? "" : ", ") + h;
                    c.add(*n, fmt::format("category '{}' is not in this prompt set (it has: {})", x, list));
                }
            std::vector<Prompt> keep;
            for (const auto& x : cats)
                for (const auto& p : ps)
                    if (p.category == x) keep.push_back(p);
            ps = keep;
        }
    }
    if (auto n = t.get("limit")) {
        int64_t lim = 0;
        if (get_int(c, *n, "limit", lim)) {
            if (lim < 1) c.add(*n, "'limit' (prompts per category) must be at least 1");
            else {
                std::vector<Prompt> keep;
                for (const auto& p : ps)
                    if (p.index < lim) keep.push_back(p);
                ps = keep;
            }
        }
    }
    m.prompts.insert(m.prompts.end(), ps.begin(), ps.end());
}

}  // namespace

ManifestError::ManifestError(std::vector<std::string> p) : std::runtime_error(join_problems(p)), problems(std::move(p)) {}

Manifest parse_manifest(const std::string& text, const fs::path& file, bool check_files) {
    Ctx c;
    c.file = file;
    toml::table root;
    try {
        root = toml::parse(text, file.string());
    } catch (const toml::parse_error& e) {
        c.add(e.source(), std::string(e.description()));
        throw ManifestError(c.sorted());
    }
    Manifest m;
    m.file = file;
    const fs::path base = file.has_parent_path() ? file.parent_path() : fs::path(".");
    check_keys(c, root, {"name", "generation", "metrics", "output", "models", "prompts"}, "the manifest");
    if (auto n = root.get("name")) get_string(c, *n, "name", m.name);

    GenerationSettings gen;
    if (auto n = root.get("generation")) {
        if (auto t = n->as_table()) parse_generation(c, *t, gen, "[generation]");
        else c.add(*n, "'generation' must be a table");
    }
    if (auto n = root.get("metrics")) {
        if (auto t = n->as_table()) parse_metrics(c, *t, m);
        else c.add(*n, "'metrics' must be a table");
    }
    if (auto n = root.get("output")) {
        if (auto t = n->as_table()) {
            check_keys(c, *t, {"save_states"}, "[output]");
            if (auto s = t->get("save_states")) get_bool(c, *s, "save_states", m.save_states);
        } else c.add(*n, "'output' must be a table");
    }

    const toml::node* models = root.get("models");
    if (!models) c.add(root.source(), "no [[models]] given");
    else if (auto arr = models->as_array()) {
        std::map<std::string, toml::source_region> labels;
        size_t i = 0;
        for (const auto& e : *arr) {
            ++i;
            const auto* t = e.as_table();
            if (!t) { c.add(e, "each [[models]] entry must be a table"); continue; }
            const std::string where = fmt::format("[[models]] #{}", i);
            check_keys(c, *t, {"label", "path", "adapters", "family", "architecture", "size", "variant_of", "covariates", "overrides"},
                       where);
            ModelEntry me;
            me.gen = gen;
            if (auto n = t->get("label")) {
                if (get_string(c, *n, "label", me.label)) {
                    if (me.label.empty()) c.add(*n, "'label' must not be empty");
                    auto [it, fresh] = labels.emplace(me.label, n->source());
                    if (!fresh)
                        c.add(*n, fmt::format("duplicate model label '{}' (first used at line {})", me.label, it->second.begin.line));
                }
            } else c.add(t->source(), where + ": missing 'label'");
            if (auto n = t->get("path")) {
                std::string p;
                if (get_string(c, *n, "path", p)) {
                    me.path = fs::path(p).is_absolute() ? fs::path(p) : base / p;
                    std::error_code ec;
                    if (check_files && !fs::is_regular_file(me.path, ec))
                        c.add(*n, fmt::format("model file '{}' does not exist", me.path.string()));
                }
            } else c.add(t->source(), where + ": missing 'path'");
            if (auto n = t->get("adapters")) parse_adapters(c, *n, me, base, check_files);
            if (auto n = t->get("family")) get_string(c, *n, "family", me.family);
            if (auto n = t->get("architecture")) get_string(c, *n, "architecture", me.architecture);
            if (auto n = t->get("size")) {
                if (auto s = n->as_string()) me.size = s->get();
                else if (n->is_number()) me.size = fmt::format("{}", n->value<double>().value_or(0));
                else c.add(*n, fmt::format("'size' must be a string or a number, not {}", type_name(*n)));
            }
            if (auto n = t->get("variant_of")) get_string(c, *n, "variant_of", me.variant_of);
            if (auto n = t->get("covariates")) {
                if (auto ct = n->as_table()) {
                    for (auto&& [k, v] : *ct) {
                        double x = 0;
                        if (get_double(c, v, "covariates." + std::string(k.str()), x)) me.covariates[std::string(k.str())] = x;
                    }
                } else c.add(*n, "'covariates' must be a table of numbers, e.g. { training_loss = 1.9 }");
            }
            if (auto n = t->get("overrides")) {
                if (auto ot = n->as_table()) parse_generation(c, *ot, me.gen, where + " overrides");
                else c.add(*n, "'overrides' must be a table");
            }
            // One GGUF (same file by device and inode) with the same adapters under two labels would
            // give both labels the same run ids: refused here, at plan time, not mid-run.
            for (const ModelEntry& other : m.models) {
                if (!check_files || !io::same_file(other.path, me.path) || other.adapters.size() != me.adapters.size()) continue;
                bool same = true;
                for (size_t k = 0; k < me.adapters.size(); ++k)
                    same = same && io::same_file(other.adapters[k].path, me.adapters[k].path) && other.adapters[k].scale == me.adapters[k].scale;
                if (same)
                    c.add(t->source(), fmt::format("{}: model '{}' is the same GGUF file as model '{}' ('{}'), with the same adapters; "
                                                   "a model gets one label", where, me.label, other.label, me.path.string()));
            }
            m.models.push_back(std::move(me));
        }
        // variant_of must name another model of the panel.
        i = 0;
        for (const auto& e : *arr) {
            const auto* t = e.as_table();
            ++i;
            if (!t || i > m.models.size()) continue;
            const auto& me = m.models[i - 1];
            if (!me.variant_of.empty() && (!labels.count(me.variant_of) || me.variant_of == me.label))
                c.add(*t->get("variant_of"), fmt::format("'variant_of' = \"{}\" names no other model of this panel", me.variant_of));
        }
        if (arr->empty()) c.add(*models, "no [[models]] given");
    } else c.add(*models, "'models' must be an array of tables ([[models]])");

    const toml::node* prompts = root.get("prompts");
    if (!prompts) c.add(root.source(), "no [[prompts]] given (a built-in panel: builtin = \"stories\", or file = \"prompts.csv\")");
    else if (auto arr = prompts->as_array()) {
        size_t i = 0;
        for (const auto& e : *arr) {
            if (auto t = e.as_table()) parse_prompt_set(c, *t, m, base, i);
            else c.add(e, "each [[prompts]] entry must be a table");
            ++i;
        }
        if (c.problems.empty() && m.prompts.empty()) c.add(*prompts, "the prompt sets select no prompt");
    } else c.add(*prompts, "'prompts' must be an array of tables ([[prompts]])");

    if (c.problems.empty())
        if (const uint64_t n = grid_size(m); n > kMaxGridRuns)
            c.add(root.source(), fmt::format("the grid holds {} runs, more than the limit of {} (split the panel into several manifests)",
                                             n == UINT64_MAX ? std::string("more than 1.8e19") : std::to_string(n), kMaxGridRuns));
    if (!c.problems.empty()) throw ManifestError(c.sorted());
    return m;
}

Manifest load_manifest(const fs::path& file) {
    std::string text;
    try { text = read_file(file); } catch (const std::exception&) {
        throw ManifestError({fmt::format("{}: cannot read the manifest file", file.string())});
    }
    return parse_manifest(text, file, true);
}

uint64_t grid_size(const Manifest& m) {
    // Overflow-safe: saturates at UINT64_MAX.
    auto mul = [](uint64_t a, uint64_t b) { return a && b > UINT64_MAX / a ? UINT64_MAX : a * b; };
    uint64_t total = 0;
    for (const auto& me : m.models) {
        uint64_t n = mul(mul(mul(mul(m.prompts.size(), me.gen.temperatures.size()), me.gen.n_predict.size()), me.gen.seeds.size()),
                         m.norms.size());
        total = total > UINT64_MAX - n ? UINT64_MAX : total + n;
    }
    return total;
}

std::vector<GridPoint> expand_grid(const Manifest& m) {
    // The size is known before anything is expanded: a grid past the cap is refused, not built.
    if (const uint64_t n = grid_size(m); n > kMaxGridRuns)
        throw ManifestError({fmt::format("the grid holds {} runs, more than the limit of {} (split the panel into several manifests)",
                                         n == UINT64_MAX ? std::string("more than 1.8e19") : std::to_string(n), kMaxGridRuns)});
    std::vector<GridPoint> g;
    size_t group = 0;
    for (size_t mi = 0; mi < m.models.size(); ++mi) {
        const auto& gen = m.models[mi].gen;
        for (size_t pi = 0; pi < m.prompts.size(); ++pi)
            for (double temp : gen.temperatures)
                for (int64_t np : gen.n_predict)
                    for (uint64_t seed : gen.seeds) {
                        for (const auto& norm : m.norms) g.push_back({mi, pi, temp, np, seed, norm, group});
                        ++group;
                    }
    }
    return g;
}

metrics::AnalysisOptions analysis_options(const Manifest& m, const std::string& norm, const std::vector<std::string>& names) {
    metrics::AnalysisOptions o = m.analysis;
    o.token.norm = *metrics::parse_norm_mode(norm);
    if (!m.metric_layer.empty()) o.layer = metrics::parse_layer_choice(m.metric_layer, names);
    return o;
}

std::string options_record_json(const Manifest& m, const std::string& norm) {
    metrics::AnalysisOptions o = m.analysis;
    o.token.norm = *metrics::parse_norm_mode(norm);
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metrics::options_record(o)) j[k] = v;
    j["layer"] = m.metric_layer.empty() ? std::string("-1") : m.metric_layer;
    j["include_embedding"] = m.include_embedding ? "true" : "false";
    return j.dump();
}

std::string run_id(const Manifest& m, const GridPoint& p, const std::string& model_sha256,
                   const std::vector<std::string>& adapter_sha256) {
    const auto& me = m.models[p.model];
    const auto& gen = me.gen;
    if (adapter_sha256.size() != me.adapters.size())
        throw std::invalid_argument(fmt::format("run_id: model '{}' has {} adapters but {} adapter hashes were given", me.label,
                                                me.adapters.size(), adapter_sha256.size()));
    const auto& pr = m.prompts[p.prompt];
    nlohmann::ordered_json j;
    j["model_sha256"] = model_sha256;
    j["category"] = pr.category;
    j["prompt"] = pr.text;
    j["chat"] = gen.chat;
    j["temperature"] = p.temperature;
    j["top_k"] = gen.top_k;
    j["top_p"] = gen.top_p;
    j["seed"] = p.seed;
    j["n_predict"] = p.n_predict;
    j["layers"] = gen.layers;
    j["precision"] = gen.precision;
    j["n_ctx"] = gen.n_ctx;
    j["metric_options"] = nlohmann::ordered_json::parse(options_record_json(m, p.norm));
    j["save_states"] = m.save_states;
    if (!me.adapters.empty()) {
        // Only with adapters: the ids of runs without any stay what they were.
        nlohmann::ordered_json ad = nlohmann::ordered_json::array();
        for (size_t i = 0; i < me.adapters.size(); ++i)
            ad.push_back({{"sha256", adapter_sha256[i]}, {"scale", me.adapters[i].scale}});
        j["adapters"] = ad;
    }
    return io::sha256_hex(j.dump()).substr(0, 32);
}

Shard parse_shard(const std::string& s) {
    const auto slash = s.find('/');
    Shard sh;
    try {
        if (slash == std::string::npos) throw std::invalid_argument("");
        size_t a = 0, b = 0;
        sh.index = std::stoul(s.substr(0, slash), &a);
        sh.count = std::stoul(s.substr(slash + 1), &b);
        if (a != slash || b != s.size() - slash - 1) throw std::invalid_argument("");
    } catch (const std::exception&) {
        throw std::invalid_argument(fmt::format("--shard must be i/N (e.g. 2/4), not '{}'", s));
    }
    if (sh.count < 1 || sh.index < 1 || sh.index > sh.count)
        throw std::invalid_argument(fmt::format("--shard {}: need 1 ≤ i ≤ N", s));
    return sh;
}

}  // namespace phasemap::panel
