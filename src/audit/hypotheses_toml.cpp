// Reading the hypotheses TOML (toml++): the only file input of the audit library.
#include <fmt/format.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <toml++/toml.h>

#include "phasemap/audit/hypotheses.hpp"

namespace phasemap::audit {

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& where, const std::string& what) {
    throw std::invalid_argument(source + ": " + where + ": " + what);
}

std::vector<std::string> strings(const toml::node* n, const std::string& source, const std::string& where) {
    std::vector<std::string> out;
    if (!n) return out;
    if (const auto* s = n->as_string()) return {s->get()};
    const auto* arr = n->as_array();
    if (!arr) fail(source, where, "expected a string or an array of strings");
    for (const auto& e : *arr) {
        const auto* s = e.as_string();
        if (!s) fail(source, where, "expected an array of strings");
        out.push_back(s->get());
    }
    return out;
}

std::optional<double> number(const toml::node* n, const std::string& source, const std::string& where) {
    if (!n) return std::nullopt;
    if (const auto* d = n->as_floating_point()) return d->get();
    if (const auto* i = n->as_integer()) return static_cast<double>(i->get());
    fail(source, where, "expected a number");
}

std::string string_or(const toml::table& t, const char* key, const std::string& def, const std::string& source,
                      const std::string& where) {
    const auto* n = t.get(key);
    if (!n) return def;
    const auto* s = n->as_string();
    if (!s) fail(source, where + "." + key, "expected a string");
    return s->get();
}

SubPanel subpanel_of(const toml::table& t, const std::string& source, const std::string& where) {
    static const std::set<std::string> known = {"models", "families", "categories", "temperatures"};
    for (const auto& [k, v] : t)
        if (!known.count(std::string(k.str()))) fail(source, where, "unknown key \"" + std::string(k.str()) + "\"");
    SubPanel s;
    s.models = strings(t.get("models"), source, where + ".models");
    s.families = strings(t.get("families"), source, where + ".families");
    s.categories = strings(t.get("categories"), source, where + ".categories");
    if (const auto* n = t.get("temperatures")) {
        const auto* arr = n->as_array();
        if (!arr) fail(source, where + ".temperatures", "expected an array of numbers");
        for (const auto& e : *arr) s.temperatures.push_back(*number(&e, source, where + ".temperatures"));
    }
    return s;
}

void check_one_of(const std::string& v, std::initializer_list<const char*> allowed, const std::string& source,
                  const std::string& where) {
    std::string list;
    for (const char* a : allowed) {
        if (v == a) return;
        list += std::string(list.empty() ? "" : ", ") + a;
    }
    fail(source, where, "\"" + v + "\" is not one of " + list);
}

}  // namespace

HypothesisFile parse_hypotheses(std::string_view text, const std::string& source) {
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        std::ostringstream os;
        os << source << ": " << e.description() << " (line " << e.source().begin.line << ")";
        throw std::invalid_argument(os.str());
    }
    HypothesisFile f;
    for (const auto& [k, v] : root)
        if (k.str() != "subpanel" && k.str() != "hypothesis")
            fail(source, "top level", "unknown key \"" + std::string(k.str()) + "\" (expected [subpanel] and [[hypothesis]])");
    if (const auto* sp = root.get_as<toml::table>("subpanel")) f.subpanel = subpanel_of(*sp, source, "subpanel");
    const auto* hs = root.get_as<toml::array>("hypothesis");
    if (!hs || hs->empty()) fail(source, "top level", "no [[hypothesis]] entries");
    static const std::set<std::string> known = {
        "id", "claim", "type", "metric", "alpha", "group_by", "a", "b", "direction", "test", "unit", "factor",
        "min_share", "max_share", "model", "regime", "across", "min_tau", "covariate", "min_r", "max_r", "subpanel"};
    std::set<std::string> ids;
    for (std::size_t i = 0; i < hs->size(); ++i) {
        const auto* t = (*hs)[i].as_table();
        std::string where = fmt::format("hypothesis #{}", i + 1);
        if (!t) fail(source, where, "expected a table");
        Hypothesis h;
        h.id = string_or(*t, "id", fmt::format("H{}", i + 1), source, where);
        where += " (" + h.id + ")";
        if (!ids.insert(h.id).second) fail(source, where, "duplicate id");
        for (const auto& [k, v] : *t)
            if (!known.count(std::string(k.str()))) fail(source, where, "unknown key \"" + std::string(k.str()) + "\"");
        h.claim = string_or(*t, "claim", "", source, where);
        h.type = string_or(*t, "type", "", source, where);
        check_one_of(h.type, {"compare", "variance_share", "regime", "ranking_stable", "correlation"}, source, where + ".type");
        h.metric = string_or(*t, "metric", h.metric, source, where);
        if (auto a = number(t->get("alpha"), source, where + ".alpha")) h.alpha = *a;
        if (!(h.alpha > 0 && h.alpha < 1)) fail(source, where + ".alpha", "must be in (0, 1)");
        h.group_by = string_or(*t, "group_by", h.group_by, source, where);
        h.a = strings(t->get("a"), source, where + ".a");
        h.b = strings(t->get("b"), source, where + ".b");
        h.direction = string_or(*t, "direction", h.direction, source, where);
        h.test = string_or(*t, "test", h.test, source, where);
        h.unit = string_or(*t, "unit", h.unit, source, where);
        h.factor = string_or(*t, "factor", h.factor, source, where);
        h.min_share = number(t->get("min_share"), source, where + ".min_share");
        h.max_share = number(t->get("max_share"), source, where + ".max_share");
        h.model = string_or(*t, "model", "", source, where);
        h.regime = string_or(*t, "regime", "", source, where);
        h.across = string_or(*t, "across", h.across, source, where);
        if (auto x = number(t->get("min_tau"), source, where + ".min_tau")) h.min_tau = *x;
        h.covariate = string_or(*t, "covariate", "", source, where);
        h.min_r = number(t->get("min_r"), source, where + ".min_r");
        h.max_r = number(t->get("max_r"), source, where + ".max_r");
        if (const auto* sp = t->get_as<toml::table>("subpanel")) h.subpanel = subpanel_of(*sp, source, where + ".subpanel");
        if (h.type == "compare") {
            check_one_of(h.group_by, {"family", "model"}, source, where + ".group_by");
            check_one_of(h.direction, {"less", "greater"}, source, where + ".direction");
            check_one_of(h.test, {"mann_whitney", "welch_t", "permutation"}, source, where + ".test");
            check_one_of(h.unit, {"run", "model"}, source, where + ".unit");
            if (h.a.empty() || h.b.empty()) fail(source, where, "compare needs groups a and b");
        } else if (h.type == "variance_share") {
            check_one_of(h.factor, {"model", "family", "category"}, source, where + ".factor");
            if (!h.min_share && !h.max_share) fail(source, where, "variance_share needs min_share and/or max_share");
        } else if (h.type == "regime") {
            if (h.model.empty()) fail(source, where, "regime needs a model");
            check_one_of(h.regime, {"UNDERACTIVE", "ADAPTIVE", "TRANSITION", "CHAOTIC"}, source, where + ".regime");
        } else if (h.type == "ranking_stable") {
            check_one_of(h.across, {"temperature", "n_predict"}, source, where + ".across");
        } else if (h.type == "correlation") {
            if (h.covariate.empty()) fail(source, where, "correlation needs a covariate");
            if (!h.min_r && !h.max_r) fail(source, where, "correlation needs min_r and/or max_r");
        }
        f.hypotheses.push_back(std::move(h));
    }
    return f;
}

HypothesisFile load_hypotheses(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::invalid_argument("cannot read hypotheses file " + path.string());
    std::ostringstream os;
    os << in.rdbuf();
    return parse_hypotheses(os.str(), path.string());
}

}  // namespace phasemap::audit
