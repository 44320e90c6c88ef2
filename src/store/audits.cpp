// Result documents in the results DB (Store::put_audits / Store::audits): audit sections, control
// audits and monitor evaluations. Each document is kept whole (audits table), its scalar leaves
// as rows of audit_values, and each array of objects in it as a relational table, so results can
// be queried with SQL and exported to Parquet like the run tables.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <set>

#include "store_internal.hpp"
#include "phasemap/io/crash_point.hpp"

#ifndef PHASEMAP_VERSION
#define PHASEMAP_VERSION "unknown"
#endif

namespace phasemap::store {

using namespace internal;
using nlohmann::json;

namespace {

const char* kAuditsSql =
    "CREATE TABLE IF NOT EXISTS audits (kind VARCHAR NOT NULL, name VARCHAR NOT NULL, seq BIGINT, ok BOOLEAN, "
    "reason VARCHAR, options VARCHAR, data VARCHAR, source VARCHAR, tables VARCHAR, phasemap_version VARCHAR, "
    "created_at VARCHAR)";
const char* kValuesSql =
    "CREATE TABLE IF NOT EXISTS audit_values (kind VARCHAR NOT NULL, name VARCHAR NOT NULL, path VARCHAR NOT NULL, "
    "value_text VARCHAR, value_number DOUBLE)";

// Tables that are never a result table name.
const std::set<std::string> kReserved{"meta", "models", "runs", "tokens", "token_layers", "audits", "audit_values"};

std::string prefix_of(const std::string& kind) {
    if (kind == "audit") return "audit";
    if (kind == "control_audit") return "control";
    if (kind == "monitor_eval") return "monitor";
    throw StoreError("results DB: unknown result kind '" + kind + "' (audit, control_audit, monitor_eval)");
}

std::string sanitize(const std::string& s) {
    std::string o;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        o.push_back(std::isalnum(u) ? char(std::tolower(u)) : '_');
    }
    return o;
}

std::string utc_now() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

struct RowTable {
    std::string path;
    const json* rows = nullptr;   // array of objects
};
struct Leaf {
    std::string path;
    const json* value = nullptr;  // scalar, or an array that is not a row table
};

void walk(const json& j, const std::string& path, std::vector<RowTable>& tables, std::vector<Leaf>& leaves) {
    if (j.is_object()) {
        for (const auto& [k, v] : j.items()) walk(v, path.empty() ? k : path + "." + k, tables, leaves);
    } else if (j.is_array() && !j.empty() && std::all_of(j.begin(), j.end(), [](const json& x) { return x.is_object(); })) {
        tables.push_back({path, &j});
    } else {
        leaves.push_back({path, &j});
    }
}

enum class ColType { boolean, integer, real, text };

ColType column_type(const json& rows, const std::string& key) {
    bool any = false, all_bool = true, all_int = true, all_num = true;
    for (const json& r : rows) {
        const auto it = r.find(key);
        if (it == r.end() || it->is_null()) continue;
        any = true;
        all_bool = all_bool && it->is_boolean();
        all_int = all_int && (it->is_number_integer());
        all_num = all_num && it->is_number();
    }
    if (!any) return ColType::text;
    if (all_bool) return ColType::boolean;
    if (all_int) return ColType::integer;
    if (all_num) return ColType::real;
    return ColType::text;
}

std::string text_of(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

void Store::put_audits(const std::vector<AuditEntry>& entries) {
    if (impl_->read_only) throw StoreError(fmt::format("results DB '{}' is open read-only: cannot store results", impl_->path.string()));
    auto& im = *impl_;
    im.in_transaction([&] {
        im.exec(kAuditsSql);
        im.exec(kValuesSql);
        std::set<std::string> existing;
        {
            auto t = im.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'");
            for (idx_t i = 0; i < t->rows(); ++i) existing.insert(t->str(0, i));
        }
        for (const AuditEntry& e : entries) {
            const std::string prefix = prefix_of(e.kind);
            if (e.name.empty()) throw StoreError("results DB: a stored result needs a name");
            // Replace what the same (kind, name) stored before.
            {
                auto old = im.query(fmt::format("SELECT tables FROM audits WHERE kind = {} AND name = {}", q(e.kind), q(e.name)));
                for (idx_t i = 0; i < old->rows(); ++i)
                    for (const auto& t : json::parse(old->str(0, i).empty() ? "[]" : old->str(0, i))) {
                        const std::string name = t.get<std::string>();
                        if (kReserved.count(name)) continue;
                        im.exec("DROP TABLE IF EXISTS " + ident(name));
                        existing.erase(name);
                    }
                im.exec(fmt::format("DELETE FROM audits WHERE kind = {} AND name = {}", q(e.kind), q(e.name)));
                im.exec(fmt::format("DELETE FROM audit_values WHERE kind = {} AND name = {}", q(e.kind), q(e.name)));
            }
            std::vector<RowTable> tables;
            std::vector<Leaf> leaves;
            walk(e.data, "", tables, leaves);

            json table_names = json::array();
            for (const RowTable& rt : tables) {
                std::string base = prefix + "_" + sanitize(e.name) + (rt.path.empty() ? "" : "_" + sanitize(rt.path));
                std::string name = base;
                for (int k = 2; kReserved.count(name) || existing.count(name); ++k) name = base + "_" + std::to_string(k);
                existing.insert(name);
                table_names.push_back(name);
                // Columns: the union of the rows' keys, in order of first appearance.
                std::vector<std::string> cols;
                std::set<std::string> seen;
                for (const json& r : *rt.rows)
                    for (const auto& [k, v] : r.items())
                        if (seen.insert(k).second) cols.push_back(k);
                std::vector<ColType> types;
                std::string ddl = "CREATE TABLE " + ident(name) + " (";
                for (size_t c = 0; c < cols.size(); ++c) {
                    types.push_back(column_type(*rt.rows, cols[c]));
                    const char* ty[] = {"BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR"};
                    ddl += (c ? ", " : "") + ident(cols[c]) + " " + ty[int(types[c])];
                }
                im.exec(ddl + ")");
                Appender a(im.con, name.c_str(), im.path);
                for (const json& r : *rt.rows) {
                    for (size_t c = 0; c < cols.size(); ++c) {
                        const auto it = r.find(cols[c]);
                        if (it == r.end() || it->is_null()) {
                            a.null();
                            continue;
                        }
                        switch (types[c]) {
                            case ColType::boolean: a.b(it->get<bool>()); break;
                            case ColType::integer:
                                it->is_number_unsigned() ? a.u64(it->get<uint64_t>()) : a.i64(it->get<int64_t>());
                                break;
                            case ColType::real: a.dbl(it->get<double>()); break;
                            case ColType::text: a.str(text_of(*it)); break;
                        }
                    }
                    a.end_row();
                }
                a.close();
                crash_point("audits.between_statements");
            }
            {
                Appender a(im.con, "audit_values", im.path);
                for (const Leaf& l : leaves) {
                    a.str(e.kind);
                    a.str(e.name);
                    a.str(l.path);
                    l.value->is_null() ? a.null() : a.str(text_of(*l.value));
                    l.value->is_number() ? a.dbl(l.value->get<double>()) : a.null();
                    a.end_row();
                }
                a.close();
            }
            auto seq = im.query("SELECT coalesce(max(seq), 0) + 1 FROM audits");
            const std::string version = e.phasemap_version.empty() ? std::string(PHASEMAP_VERSION) : e.phasemap_version;
            Appender a(im.con, "audits", im.path);
            a.str(e.kind);
            a.str(e.name);
            a.i64(seq->i64(0, 0));
            a.b(e.ok);
            a.str_or_null(e.reason);
            a.str(text_of(e.options.is_null() ? json::object() : e.options));
            a.str(text_of(e.data));
            a.str_or_null(e.source);
            a.str(table_names.dump());
            a.str(version);
            a.str(e.created_at.empty() ? utc_now() : e.created_at);
            a.end_row();
            a.close();
        }
        crash_point("audits.before_commit");
    });
    crash_point("audits.after_commit");
}

std::vector<AuditEntry> Store::audits(const std::string& kind) const {
    std::vector<AuditEntry> out;
    auto& im = *impl_;
    auto t = im.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = 'audits'");
    if (t->i64(0, 0) == 0) return out;
    auto r = im.query("SELECT kind, name, ok, reason, options, data, source, tables, phasemap_version, created_at FROM audits" +
                      (kind.empty() ? std::string() : " WHERE kind = " + q(kind)) + " ORDER BY kind, seq");
    for (idx_t i = 0; i < r->rows(); ++i) {
        AuditEntry e;
        e.kind = r->str(0, i);
        e.name = r->str(1, i);
        e.ok = r->str(2, i) == "true";
        e.reason = r->str(3, i);
        try {
            e.options = json::parse(r->str(4, i).empty() ? "{}" : r->str(4, i));
            e.data = r->null(5, i) ? json() : json::parse(r->str(5, i));
            for (const auto& n : json::parse(r->str(7, i).empty() ? "[]" : r->str(7, i))) e.tables.push_back(n.get<std::string>());
        } catch (const json::exception& ex) {
            throw StoreError(fmt::format("results DB '{}': stored result {}/{} is not valid JSON: {}", im.path.string(), e.kind,
                                         e.name, ex.what()));
        }
        e.source = r->str(6, i);
        e.phasemap_version = r->str(8, i);
        e.created_at = r->str(9, i);
        out.push_back(std::move(e));
    }
    return out;
}

}  // namespace phasemap::store
