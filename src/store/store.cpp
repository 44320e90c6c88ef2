// The results store on DuckDB's C API (src/store is the only code that includes duckdb.h).
#include "phasemap/store/store.hpp"
#include "testing.hpp"

#include <duckdb.h>
#include <fmt/core.h>

#include "store_internal.hpp"
#include <fcntl.h>
#include <unistd.h>

#include <optional>
#include <set>

#include "phasemap/io/crash_point.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <regex>
#include <nlohmann/json.hpp>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/layer_id.hpp"
#include "phasemap/metrics/output_states.hpp"
#include "phasemap/metrics/registry.hpp"

namespace phasemap::store {

using namespace internal;

namespace {

using metrics::MetricInfo;
using metrics::Shape;

const char* kTables[] = {"meta", "models", "runs", "tokens", "token_layers"};


bool is_routing(const MetricInfo& m) { return m.axis == metrics::Axis::routing; }

// MoE routing columns (docs/metrics-moe.md) come last in runs and tokens, after the columns of
// schema version 2 as first released, so that a DB written before them takes them with
// ALTER TABLE … ADD COLUMN (migrate_routing_columns) and positional appends stay aligned.
const std::vector<std::string>& routing_run_cols() {
    static const std::vector<std::string> v = [] {
        std::vector<std::string> o;
        for (const MetricInfo& m : metrics::metric_registry())
            if (is_routing(m) && m.shape == Shape::scalar) o.emplace_back(m.name);
        for (const MetricInfo& m : metrics::metric_registry())
            if (is_routing(m) && m.shape == Shape::per_token) o.push_back("median_" + std::string(m.name));
        return o;
    }();
    return v;
}

const std::vector<std::string>& routing_token_cols() {
    static const std::vector<std::string> v = [] {
        std::vector<std::string> o;
        for (const MetricInfo& m : metrics::metric_registry())
            if (is_routing(m) && m.shape == Shape::per_token) o.emplace_back(m.name);
        return o;
    }();
    return v;
}

// The run columns of the first schema-2 release (no routing), in table order.
const std::vector<std::string>& core_run_cols() {
    static const std::vector<std::string> v = [] {
        std::vector<std::string> o;
        for (const MetricInfo& m : metrics::metric_registry())
            if (m.shape == Shape::scalar && !is_routing(m)) o.emplace_back(m.name);
        o.emplace_back("perplexity");
        o.emplace_back("mean_ct");
        // §5 cycle data per run (the audits' cycles section): mean dwell time per state and the
        // state-transition counts, FROM_TO in kOutputStates order.
        for (const auto st : metrics::kOutputStates) o.push_back("dwell_mean_" + std::string(metrics::to_string(st)));
        for (const auto a : metrics::kOutputStates)
            for (const auto b : metrics::kOutputStates)
                o.push_back("transition_" + std::string(metrics::to_string(a)) + "_" + std::string(metrics::to_string(b)));
        for (const MetricInfo& m : metrics::metric_registry())
            if (m.shape == Shape::per_token && !is_routing(m)) o.push_back("median_" + std::string(m.name));
        return o;
    }();
    return v;
}

const std::vector<std::string>& core_token_cols() {
    static const std::vector<std::string> v = [] {
        std::vector<std::string> o;
        for (const MetricInfo& m : metrics::metric_registry())
            if (m.shape == Shape::per_token && !is_routing(m)) o.emplace_back(m.name);
        return o;
    }();
    return v;
}

std::vector<std::string> concat(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<std::string> o = a;
    o.insert(o.end(), b.begin(), b.end());
    return o;
}

const std::vector<std::string>& run_cols_impl() {
    static const std::vector<std::string> v = concat(core_run_cols(), routing_run_cols());
    return v;
}

const std::vector<std::string>& token_cols_impl() {
    static const std::vector<std::string> v = concat(core_token_cols(), routing_token_cols());
    return v;
}

// The LayerId columns of token_layers (schema version 3), last so that a version-2 DB takes them
// with ALTER TABLE … ADD COLUMN (migrate_to_v3) and positional appends stay aligned.
constexpr const char* kLayerIdColumns = ", layer_kind VARCHAR, layer_index BIGINT, depth DOUBLE";

// A layer label's LayerId columns: kind, index, depth (metrics::LayerId::depth with the model's
// block count, −1 when unknown: hf:N is then N); unset for a label that is no layer id (LIMEN's
// "layer[i]").
struct LayerCols {
    std::optional<std::string> kind;
    std::optional<int64_t> index;
    std::optional<double> depth;
};
LayerCols layer_cols(const std::string& label, int64_t n_layer) {
    const auto id = metrics::LayerId::try_parse(label);
    if (!id) return {};
    return {std::string(metrics::to_string(id->kind)), id->index, id->depth(int(n_layer))};
}

std::vector<std::string> schema_sql() {
    std::string runs =
        "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, category VARCHAR, prompt_index BIGINT, "
        "prompt VARCHAR, prompt_text VARCHAR, chat BOOLEAN, temperature DOUBLE, top_k BIGINT, top_p DOUBLE, seed UBIGINT, "
        "n_predict BIGINT, layers VARCHAR, \"precision\" VARCHAR, n_ctx BIGINT, norm VARCHAR, metric_layer VARCHAR, "
        "metric_options VARCHAR, n_generated BIGINT, stop_reason VARCHAR, text VARCHAR, regime VARCHAR";
    for (const auto& c : core_run_cols()) runs += ", " + ident(c) + " DOUBLE";
    runs += ", missing_reasons VARCHAR, states_path VARCHAR";
    for (const auto& c : routing_run_cols()) runs += ", " + ident(c) + " DOUBLE";
    runs += ", output_stats VARCHAR)";
    std::string tokens =
        "CREATE TABLE tokens (run_id VARCHAR NOT NULL, t BIGINT NOT NULL, token_id BIGINT, token_text VARCHAR, "
        "position BIGINT";
    for (const auto& c : core_token_cols()) tokens += ", " + ident(c) + " DOUBLE";
    tokens += ", output_state VARCHAR";
    for (const auto& c : routing_token_cols()) tokens += ", " + ident(c) + " DOUBLE";
    tokens += ")";
    return {
        "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        "CREATE TABLE models (label VARCHAR PRIMARY KEY, path VARCHAR, sha256 VARCHAR, family VARCHAR, "
        "architecture VARCHAR, gguf_architecture VARCHAR, size VARCHAR, variant_of VARCHAR, covariates VARCHAR, "
        "adapters VARCHAR, description VARCHAR, n_layer BIGINT, n_embd BIGINT, n_vocab BIGINT, n_params BIGINT)",
        runs,
        tokens,
        "CREATE TABLE token_layers (run_id VARCHAR NOT NULL, t BIGINT NOT NULL, layer VARCHAR NOT NULL, delta_t DOUBLE, "
        "curvature_t DOUBLE, ct_t DOUBLE, speed DOUBLE, turning_angle_rad DOUBLE" + std::string(kLayerIdColumns) + ")",
    };
}

}  // namespace

const std::vector<std::string>& run_metric_columns() { return run_cols_impl(); }
const std::vector<std::string>& token_metric_columns() { return token_cols_impl(); }


namespace {

// Opens the database file; maps DuckDB's errors to user-facing messages.
std::unique_ptr<Store::Impl> open_raw(const fs::path& path, bool read_only) {
    auto im = std::make_unique<Store::Impl>();
    im->path = path;
    im->read_only = read_only;
    duckdb_config cfg;
    duckdb_create_config(&cfg);
    if (read_only) duckdb_set_config(cfg, "access_mode", "READ_ONLY");
    duckdb_set_config(cfg, "threads", "1");
    char* err = nullptr;
    const bool ok = duckdb_open_ext(path.c_str(), &im->db, cfg, &err) == DuckDBSuccess;
    duckdb_destroy_config(&cfg);
    if (!ok) {
        std::string e = err ? err : "unknown error";
        if (err) duckdb_free(err);
        im->db = nullptr;
        // DuckDB's lock conflict reads "Could not set lock on file ...: Conflicting lock is held";
        // a whole-word match keeps "block" (a corrupt block) from reading as a lock.
        if (std::regex_search(e, std::regex("\\block\\b", std::regex::icase)))
            throw StoreError(fmt::format("results DB '{}' is locked by another process (another `phasemap panel run` "
                                         "or a DuckDB session has it open; DuckDB admits no reader beside a writer, so "
                                         "report/export/audit can read it once that process ends — a stopped "
                                         "`panel run` resumes where it left off): {}",
                                         path.string(), e));
        throw StoreError(fmt::format("cannot open results DB '{}': {}", path.string(), e));
    }
    if (duckdb_connect(im->db, &im->con) != DuckDBSuccess)
        throw StoreError(fmt::format("cannot connect to results DB '{}'", path.string()));
    return im;
}

// The columns of one table, by name.
std::set<std::string> columns_of(Store::Impl& im, const std::string& table) {
    auto r = im.query("SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = " + q(table));
    std::set<std::string> o;
    for (idx_t i = 0; i < r->rows(); ++i) o.insert(r->str(0, i));
    return o;
}

// A schema-2 DB written before the MoE routing columns existed gets them (NULL for its runs),
// in one transaction, appended in the order a new DB has them.
void migrate_routing_columns(Store::Impl& im) {
    const auto rc = columns_of(im, "runs"), tc = columns_of(im, "tokens");
    std::vector<std::string> add;
    for (const auto& c : routing_run_cols())
        if (!rc.count(c)) add.push_back("ALTER TABLE runs ADD COLUMN " + ident(c) + " DOUBLE");
    for (const auto& c : routing_token_cols())
        if (!tc.count(c)) add.push_back("ALTER TABLE tokens ADD COLUMN " + ident(c) + " DOUBLE");
    if (!add.empty())
        im.in_transaction([&] {
            for (const auto& sql : add) im.exec(sql);
        });
}

// Fills the LayerId columns of the token_layers rows `where` selects (an SQL condition on tl), one
// UPDATE per distinct (label, block count): the values come from metrics::LayerId, never from SQL.
void fill_layer_columns(Store::Impl& im, const std::string& where) {
    auto r = im.query("SELECT DISTINCT tl.layer, coalesce(m.n_layer, -1) FROM token_layers tl JOIN runs r USING (run_id) "
                      "LEFT JOIN models m ON m.label = r.model WHERE " + where);
    for (idx_t i = 0; i < r->rows(); ++i) {
        const std::string label = r->str(0, i);
        const int64_t n_layer = r->i64(1, i);
        const LayerCols c = layer_cols(label, n_layer);
        if (!c.kind) continue;
        im.exec(fmt::format("UPDATE token_layers tl SET layer_kind = {}, layer_index = {}, depth = {} WHERE ({}) AND tl.layer = {} AND "
                            "tl.run_id IN (SELECT r.run_id FROM runs r LEFT JOIN models m ON m.label = r.model "
                            "WHERE coalesce(m.n_layer, -1) = {})",
                            q(*c.kind), *c.index, fmt::format("{:.17g}", *c.depth), where, q(label), n_layer));
    }
}

// Schema version 2 → 3 (a DB opened for writing): the LayerId columns of token_layers added and
// filled from each row's label, and the version bumped, in one transaction (a killed migration
// leaves the version-2 DB as it was).
void migrate_to_v3(Store::Impl& im) {
    const auto m = im.meta();
    if (m.at("schema_version") != "2") return;
    im.in_transaction([&] {
        im.exec("ALTER TABLE token_layers ADD COLUMN layer_kind VARCHAR");
        im.exec("ALTER TABLE token_layers ADD COLUMN layer_index BIGINT");
        im.exec("ALTER TABLE token_layers ADD COLUMN depth DOUBLE");
        fill_layer_columns(im, "true");
        im.exec("UPDATE meta SET value = '3' WHERE key = 'schema_version'");
    });
}

// Schema version 3 → 4 (after migrate_to_v3 and the routing columns, so that the column lands
// last, where a new DB has it): runs.output_stats added, NULL for the runs already stored (not
// recorded before), and the version bumped, in one transaction.
void migrate_to_v4(Store::Impl& im) {
    const auto m = im.meta();
    if (m.at("schema_version") != "3") return;
    im.in_transaction([&] {
        if (!columns_of(im, "runs").count("output_stats")) im.exec("ALTER TABLE runs ADD COLUMN output_stats VARCHAR");
        im.exec("UPDATE meta SET value = '4' WHERE key = 'schema_version'");
    });
}

// Checks an opened DB: phasemap tables present, schema version ours. Returns false for an empty DB.
bool check_layout(Store::Impl& im) {
    auto t = im.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'");
    std::set<std::string> names;
    for (idx_t i = 0; i < t->rows(); ++i) names.insert(t->str(0, i));
    if (names.empty()) return false;
    if (!names.count("meta"))
        throw StoreError(fmt::format("'{}' is a DuckDB file but not a phasemap results DB (no meta table)", im.path.string()));
    const auto m = im.meta();
    const auto it = m.find("schema_version");
    if (it == m.end())
        throw StoreError(fmt::format("'{}' is not a phasemap results DB (meta has no schema_version)", im.path.string()));
    bool known = false;
    for (int v = kOldestSchemaVersion; v <= kSchemaVersion; ++v) known |= it->second == std::to_string(v);
    if (!known)
        throw StoreError(fmt::format("results DB '{}' has phasemap schema version {}, this phasemap reads and writes "
                                     "version {} (and migrates versions {} to {}): use a new DB file (or the phasemap release "
                                     "that wrote it)",
                                     im.path.string(), it->second, kSchemaVersion, kOldestSchemaVersion, kSchemaVersion - 1));
    for (const char* tb : kTables)
        if (!names.count(tb))
            throw StoreError(fmt::format("results DB '{}' lacks the {} table", im.path.string(), tb));
    return true;
}

}  // namespace

namespace {

// Whether another process holds a lock on the file (DuckDB locks its database file with fcntl).
bool locked_by_other_process(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDWR);
    if (fd < 0) return false;
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    const bool locked = ::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    ::close(fd);
    return locked;
}

// fsync of a directory, so that a rename or link into it survives a power loss.
void sync_dir(const fs::path& dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

// Gives the complete file `tmp` the name `to` unless `to` exists: hard link, then the temporary
// name is removed. Returns false (tmp removed) when `to` exists. On a file system without hard
// links, a rename after an existence check (a narrow race instead of none). Sets errno and
// returns false with errno ≠ EEXIST on other failures.
bool move_no_replace(const fs::path& tmp, const fs::path& to) {
    std::error_code ec;
    if (::link(tmp.c_str(), to.c_str()) == 0) {
        fs::remove(tmp, ec);
        return true;
    }
    const int err = errno;
    if (err == EPERM || err == EOPNOTSUPP || err == ENOSYS) {
        if (fs::exists(to, ec)) {
            fs::remove(tmp, ec);
            errno = EEXIST;
            return false;
        }
        if (::rename(tmp.c_str(), to.c_str()) == 0) return true;
    }
    const int err2 = errno;
    fs::remove(tmp, ec);
    errno = err2;
    return false;
}

void write_schema(Store::Impl& im, const OpenOptions& opt) {
    im.in_transaction([&] {
        for (const auto& s : schema_sql()) {
            im.exec(s);
            crash_point("store.create");
        }
        std::map<std::string, std::string> meta = opt.meta;
        meta["schema_version"] = std::to_string(kSchemaVersion);
        if (!opt.manifest_hash.empty()) meta["manifest_hash"] = opt.manifest_hash;
        for (const auto& [k, v] : meta) im.exec(fmt::format("INSERT INTO meta VALUES ({}, {})", q(k), q(v)));
    });
}

// A new results DB appears complete or not at all: it is made under a temporary name in the same
// directory (schema, meta, checkpoint, closed) and linked to its name, which fails when the name
// exists by then (another writer created it first: that one is used). Temporary files of killed
// creators (not locked by a live process) are removed.
void create_new(const fs::path& path, const OpenOptions& opt) {
    const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    const std::string prefix = fmt::format(".{}.creating-", path.filename().string());
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        if (n.rfind(prefix, 0) == 0 && n.find(".wal") == std::string::npos && !locked_by_other_process(e.path())) {
            fs::remove(e.path(), ec);
            fs::remove(fs::path(e.path().string() + ".wal"), ec);
        }
    }
    const fs::path tmp = dir / fmt::format("{}{}", prefix, ::getpid());
    fs::remove(tmp, ec);
    fs::remove(fs::path(tmp.string() + ".wal"), ec);
    try {
        {
            auto im = open_raw(tmp, false);
            write_schema(*im, opt);
            im->exec("CHECKPOINT");
        }
        if (fs::exists(fs::path(tmp.string() + ".wal"), ec))
            throw StoreError(fmt::format("cannot create results DB '{}': '{}' kept a write-ahead log after closing", path.string(),
                                         tmp.string()));
        // Another writer that created the DB first wins: its file is used.
        if (!move_no_replace(tmp, path) && errno != EEXIST)
            throw StoreError(fmt::format("cannot create results DB '{}': {}", path.string(), std::strerror(errno)));
    } catch (const std::exception& e) {
        fs::remove(tmp, ec);
        fs::remove(fs::path(tmp.string() + ".wal"), ec);
        const std::string what = e.what();
        if (what.rfind("cannot create results DB", 0) == 0) throw;
        throw StoreError(fmt::format("cannot create results DB '{}' (made as '{}' first): {}", path.string(), tmp.string(), what));
    }
    fs::remove(tmp, ec);
    sync_dir(dir);
}

}  // namespace

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;
const fs::path& Store::path() const { return impl_->path; }

std::unique_ptr<Store> Store::open(const fs::path& path, const OpenOptions& opt) {
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    if (opt.read_only && !exists) throw StoreError(fmt::format("results DB '{}' does not exist", path.string()));
    if (exists && fs::is_directory(path, ec)) throw StoreError(fmt::format("results DB '{}' is a directory", path.string()));
    if (!exists) {
        const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
        if (!fs::is_directory(dir, ec))
            throw StoreError(fmt::format("cannot create results DB '{}': directory '{}' does not exist", path.string(), dir.string()));
    }
    if (exists && !opt.read_only) {
        // Validate read-only first, so that a refused DB is never opened for writing.
        auto probe = open_raw(path, true);
        if (check_layout(*probe)) {
            const auto m = probe->meta();
            const auto h = m.find("manifest_hash");
            if (!opt.manifest_hash.empty() && h != m.end() && h->second != opt.manifest_hash)
                throw StoreError(fmt::format("results DB '{}' holds runs of another panel manifest (grid hash {} ≠ {}): "
                                             "use a new DB file for this manifest",
                                             path.string(), h->second.substr(0, 12), opt.manifest_hash.substr(0, 12)));
        }
    }
    if (!exists && !opt.read_only) create_new(path, opt);
    auto im = open_raw(path, opt.read_only);
    const bool laid_out = check_layout(*im);
    if (!laid_out) {
        // An empty DuckDB file (made by someone else): the schema goes in as one transaction.
        if (opt.read_only) throw StoreError(fmt::format("results DB '{}' is empty (no phasemap tables)", path.string()));
        write_schema(*im, opt);
    } else if (!opt.read_only) {
        migrate_routing_columns(*im);
        migrate_to_v3(*im);
        migrate_to_v4(*im);
        if (!opt.manifest_hash.empty()) {
            const auto m = im->meta();
            if (!m.count("manifest_hash"))
                im->exec(fmt::format("INSERT INTO meta VALUES ('manifest_hash', {})", q(opt.manifest_hash)));
        }
    }
    return std::unique_ptr<Store>(new Store(std::move(im)));
}

std::map<std::string, std::string> Store::meta() const { return impl_->meta(); }

std::set<std::string> Store::run_ids() const {
    std::set<std::string> ids;
    auto r = impl_->query("SELECT run_id FROM runs");
    for (idx_t i = 0; i < r->rows(); ++i) ids.insert(r->str(0, i));
    return ids;
}

int64_t Store::count(const std::string& table) const {
    auto r = impl_->query("SELECT count(*) FROM " + ident(table));
    return r->i64(0, 0);
}

void Store::put_model(const ModelRow& m) {
    auto r = impl_->query("SELECT sha256 FROM models WHERE label = " + q(m.label));
    if (r->rows() > 0) {
        if (r->str(0, 0) != m.sha256)
            throw StoreError(fmt::format("results DB '{}' already holds a model '{}' with another file (sha256 {} ≠ {})",
                                         impl_->path.string(), m.label, r->str(0, 0).substr(0, 12), m.sha256.substr(0, 12)));
        return;
    }
    nlohmann::json cov = nlohmann::json::object();
    for (const auto& [k, v] : m.covariates) cov[k] = v;
    auto opt = [](const std::string& s) { return s.empty() ? std::string("NULL") : q(s); };
    impl_->exec(fmt::format("INSERT INTO models VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})", q(m.label),
                            q(m.path), q(m.sha256), opt(m.family), q(m.architecture), q(m.gguf_architecture), opt(m.size),
                            opt(m.variant_of), q(cov.dump()), q(m.adapters.empty() ? "[]" : m.adapters), q(m.description), m.n_layer, m.n_embd, m.n_vocab, m.n_params));
}

namespace {


double mean_of(const std::vector<double>& v) {
    double s = 0;
    size_t n = 0;
    for (double x : v)
        if (std::isfinite(x)) s += x, ++n;
    return n ? s / double(n) : std::nan("");
}

}  // namespace

namespace {

// Appends the runs row, the tokens rows and the token_layers rows of one analysed run (inside the
// caller's transaction). Between the tables: crash point store.between_statements.
void append_run(Store::Impl& im, const RunRow& run, const metrics::RunSummary& s, const std::vector<TokenData>& tokens,
                const std::vector<LayerTokenData>& layers) {
    using namespace phasemap::metrics;
    // Run-level values by column name, and the reasons of missing ones.
    std::map<std::string, double> vals;
    nlohmann::json missing = nlohmann::json::object();
    for (const MetricInfo& m : metric_registry())
        if (m.shape == Shape::scalar) {
            const Value v = m.scalar(s);
            vals[std::string(m.name)] = v.ok() ? v.v : std::nan("");
            // A run without MoE routing leaves the routing columns NULL without a reason each.
            if (!v.ok() && !(m.axis == metrics::Axis::routing && !s.routing)) missing[std::string(m.name)] = v.missing_reason;
        }
    std::string regime;
    if (const MetricInfo* rm = find_metric("regime")) {
        std::string why;
        regime = rm->label(s, why);
        if (regime.empty()) missing["regime"] = why;
    }
    std::vector<double> surpr;
    for (const auto& st : s.stats) surpr.push_back(st.surprisal);
    vals["perplexity"] = surpr.empty() ? std::nan("") : std::exp(mean_of(surpr));
    vals["mean_ct"] = mean_of(s.token.series.ct);
    for (size_t i = 0; i < kOutputStateCount; ++i) {
        const std::string si(to_string(kOutputStates[i]));
        double dwell = std::nan("");
        if (s.output && !s.output->dwell[i].empty()) {
            dwell = 0;
            for (size_t len : s.output->dwell[i]) dwell += double(len);
            dwell /= double(s.output->dwell[i].size());
        }
        vals["dwell_mean_" + si] = dwell;
        for (size_t j = 0; j < kOutputStateCount; ++j)
            vals["transition_" + si + "_" + std::string(to_string(kOutputStates[j]))] =
                s.output ? double(s.output->transitions[i][j]) : std::nan("");
    }
    for (const NamedSummary& ns : per_token_summaries(s))
        vals["median_" + std::string(ns.name)] = ns.summary.median.ok() ? ns.summary.median.v : std::nan("");

    // Per-token columns.
    std::vector<std::vector<double>> tok_vals;
    for (const auto& c : core_token_cols()) tok_vals.push_back(find_metric(c)->per_token(s));
    std::vector<std::vector<double>> route_vals;
    for (const auto& c : routing_token_cols()) route_vals.push_back(find_metric(c)->per_token(s));
    std::vector<std::string> states(tokens.size());
    if (const MetricInfo* os = find_metric("output_state")) states = os->per_token_label(s);

    {
        {
            Appender a(im.con, "runs", im.path);
            a.str(run.run_id); a.str(run.model); a.str(run.category); a.i64(run.prompt_index); a.str(run.prompt);
            a.str(run.prompt_text); a.b(run.chat); a.dbl(run.temperature); a.i64(run.top_k); a.dbl(run.top_p);
            a.u64(run.seed); a.i64(run.n_predict); a.str(run.layers); a.str(run.precision); a.i64(run.n_ctx);
            a.str(run.norm); a.str(s.layer_name); a.str(run.metric_options); a.i64(run.n_generated);
            a.str(run.stop_reason); a.str(run.text); a.str_or_null(regime);
            for (const auto& c : core_run_cols()) a.dbl(vals.at(c));
            a.str(missing.dump());
            a.str_or_null(run.states_path);
            for (const auto& c : routing_run_cols()) a.dbl(vals.at(c));
            a.str_or_null(run.output_stats);
            a.end_row();
            a.close();
        }
        crash_point("store.between_statements");
        {
            Appender a(im.con, "tokens", im.path);
            for (size_t t = 0; t < tokens.size(); ++t) {
                a.str(run.run_id); a.i64(int64_t(t)); a.i64(tokens[t].id); a.str(tokens[t].text); a.i64(tokens[t].position);
                for (const auto& col : tok_vals) a.dbl(t < col.size() ? col[t] : std::nan(""));
                a.str_or_null(t < states.size() ? states[t] : std::string());
                for (const auto& col : route_vals) a.dbl(t < col.size() ? col[t] : std::nan(""));
                a.end_row();
            }
            a.close();
        }
        crash_point("store.between_statements");
        if (!layers.empty()) {
            auto nl = im.query("SELECT n_layer FROM models WHERE label = " + q(run.model));
            const int64_t n_layer = nl->rows() > 0 && !nl->null(0, 0) ? nl->i64(0, 0) : -1;
            Appender a(im.con, "token_layers", im.path);
            auto at = [](const std::vector<double>& v, size_t t) { return t < v.size() ? v[t] : std::nan(""); };
            for (const LayerTokenData& l : layers) {
                const LayerCols c = layer_cols(l.layer, n_layer);
                for (size_t t = 0; t < tokens.size(); ++t) {
                    a.str(run.run_id); a.i64(int64_t(t)); a.str(l.layer);
                    a.dbl(at(l.delta_t, t)); a.dbl(at(l.curvature_t, t)); a.dbl(at(l.ct_t, t));
                    a.dbl(at(l.speed, t)); a.dbl(at(l.turning_angle_rad, t));
                    a.str_or_null(c.kind.value_or(""));
                    if (c.index) a.i64(*c.index); else a.null();
                    a.dbl(c.depth.value_or(std::nan("")));
                    a.end_row();
                }
            }
            a.close();
        }
    }
}

}  // namespace

void Store::commit_run(const RunRow& run, const metrics::RunSummary& summary, const std::vector<TokenData>& tokens,
                       const std::vector<LayerTokenData>& layers) {
    auto& im = *impl_;
    im.in_transaction([&] { append_run(im, run, summary, tokens, layers); });
}

size_t Store::commit_group(const std::vector<RunWrite>& runs) {
    auto& im = *impl_;
    if (im.read_only) throw StoreError(fmt::format("results DB '{}' is open read-only: cannot store runs", im.path.string()));
    if (runs.empty()) return 0;
    size_t written = 0;
    im.in_transaction([&] {
        // Runs already stored (a group stored in part by a phasemap that committed each row on
        // its own) are left as they are; the check runs inside the transaction.
        std::string in;
        for (const RunWrite& w : runs) in += (in.empty() ? "" : ", ") + q(w.run->run_id);
        std::set<std::string> stored;
        auto r = im.query("SELECT run_id FROM runs WHERE run_id IN (" + in + ")");
        for (idx_t i = 0; i < r->rows(); ++i) stored.insert(r->str(0, i));
        for (const RunWrite& w : runs) {
            if (stored.count(w.run->run_id)) continue;
            if (written > 0) crash_point("store.between_runs");
            static const std::vector<LayerTokenData> none;
            append_run(im, *w.run, *w.summary, *w.tokens, w.layers ? *w.layers : none);
            stored.insert(w.run->run_id);
            ++written;
        }
        crash_point("store.before_commit");
    });
    return written;
}

std::vector<std::string> Store::export_parquet(const fs::path& dir_in) const {
    const fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
    std::error_code ec;
    if (fs::exists(dir, ec)) {
        if (!fs::is_directory(dir, ec)) throw StoreError(fmt::format("export target '{}' exists and is not a directory", dir.string()));
        for (const auto& e : fs::directory_iterator(dir))
            if (e.path().extension() != ".parquet")
                throw StoreError(fmt::format("export target '{}' holds other files than Parquet ('{}'): not replacing it",
                                             dir.string(), e.path().filename().string()));
    }
    const fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
    if (!fs::is_directory(parent, ec)) throw StoreError(fmt::format("cannot export to '{}': directory '{}' does not exist", dir.string(), parent.string()));
    const fs::path tmp = parent / fmt::format(".{}.tmp-{}", dir.filename().string(), ::getpid());
    fs::remove_all(tmp, ec);
    fs::create_directory(tmp);
    std::vector<std::string> written;
    try {
        // Every table of the DB: the run tables in a fixed row order, result tables by all columns.
        const std::map<std::string, std::string> order{{"meta", "key"},           {"models", "label"},
                                                       {"runs", "run_id"},        {"tokens", "run_id, t"},
                                                       {"token_layers", "run_id, t, layer"}, {"audits", "kind, name"}};
        auto t = impl_->query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name");
        for (idx_t i = 0; i < t->rows(); ++i) {
            const std::string name = t->str(0, i);
            written.push_back(name);
            const auto o = order.find(name);
            impl_->exec(fmt::format("COPY (SELECT * FROM {} ORDER BY {}) TO {} (FORMAT PARQUET)", ident(name),
                                    o == order.end() ? std::string("ALL") : o->second, q((tmp / (name + ".parquet")).string())));
        }
        const fs::path old = parent / fmt::format(".{}.old-{}", dir.filename().string(), ::getpid());
        const bool had = fs::exists(dir);
        if (had) fs::rename(dir, old);
        fs::rename(tmp, dir);
        if (had) fs::remove_all(old, ec);
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    return written;
}

PanelTable Store::panel_table() const {
    PanelTable pt;
    {
        auto r = impl_->query("SELECT label, family, architecture, sha256, variant_of, covariates, size FROM models ORDER BY label");
        for (idx_t i = 0; i < r->rows(); ++i) {
            PanelModel m;
            m.label = r->str(0, i);
            m.family = r->str(1, i);
            m.architecture = r->str(2, i);
            m.sha256 = r->str(3, i);
            if (!r->null(4, i)) m.variant_of = r->str(4, i);
            const auto cov = nlohmann::json::parse(r->str(5, i).empty() ? "{}" : r->str(5, i));
            for (const auto& [k, v] : cov.items())
                if (v.is_number()) m.covariates[k] = v.get<double>();
            pt.models.push_back(std::move(m));
        }
    }
    std::string sql = "SELECT run_id, model, category, prompt, temperature, n_predict, seed, n_generated, text, regime, norm";
    // A read-only DB from before the routing columns: those read as NULL.
    const auto have = columns_of(*impl_, "runs");
    for (const auto& c : run_metric_columns()) sql += ", " + (have.count(c) ? ident(c) : std::string("NULL::DOUBLE"));
    sql += " FROM runs ORDER BY model, category, prompt_index, temperature, n_predict, seed, norm, run_id";
    auto r = impl_->query(sql);
    for (idx_t i = 0; i < r->rows(); ++i) {
        PanelRun p;
        p.run_id = r->str(0, i);
        p.model = r->str(1, i);
        p.category = r->str(2, i);
        p.prompt = r->str(3, i);
        p.temperature = r->dbl(4, i);
        p.n_predict = r->i64(5, i);
        p.seed = r->u64(6, i);
        p.n_generated = r->i64(7, i);
        p.text = r->str(8, i);
        p.regime = r->str(9, i);
        p.norm = r->str(10, i);
        idx_t c = 11;
        for (const auto& name : run_metric_columns()) p.metrics[name] = r->dbl(c++, i);
        pt.runs.push_back(std::move(p));
    }
    {
        // Identity of each run's generation (the audit merges identical ones, docs/audit.md).
        std::map<std::string, size_t> at;
        for (size_t i = 0; i < pt.runs.size(); ++i) at.emplace(pt.runs[i].run_id, i);
        auto d = impl_->query(
            "SELECT run_id, md5(string_agg(CAST(token_id AS VARCHAR), ',' ORDER BY t)) FROM tokens GROUP BY run_id");
        for (idx_t i = 0; i < d->rows(); ++i) {
            const auto it = at.find(d->str(0, i));
            if (it != at.end() && !d->null(1, i)) pt.runs[it->second].tokens_digest = d->str(1, i);
        }
    }
    return pt;
}

std::vector<std::string> Store::rows(const std::string& sql) const {
    auto r = impl_->query(sql);
    std::vector<std::string> out;
    for (idx_t i = 0; i < r->rows(); ++i) {
        std::string line;
        for (idx_t c = 0; c < r->cols(); ++c) {
            if (c) line += '\t';
            line += r->null(c, i) ? std::string("\\N") : r->str(c, i);
        }
        out.push_back(std::move(line));
    }
    return out;
}

std::vector<Store::TokenSeries> Store::token_series(const std::vector<std::string>& run_ids) const {
    std::vector<TokenSeries> out;
    if (run_ids.empty()) return out;
    std::string in;
    for (const auto& id : run_ids) {
        std::string q;
        for (char ch : id) q += ch == '\'' ? std::string("''") : std::string(1, ch);
        in += (in.empty() ? "'" : ",'") + q + "'";
    }
    auto r = impl_->query("SELECT run_id, token_text, delta_t, curvature_t, ct_t, output_state FROM tokens WHERE run_id IN (" +
                          in + ") ORDER BY run_id, t");
    std::map<std::string, TokenSeries> by_id;
    for (idx_t i = 0; i < r->rows(); ++i) {
        TokenSeries& ts = by_id[r->str(0, i)];
        ts.token.push_back(r->null(1, i) ? std::string() : r->str(1, i));
        ts.delta_t.push_back(r->dbl(2, i));
        ts.curvature_t.push_back(r->dbl(3, i));
        ts.ct_t.push_back(r->dbl(4, i));
        ts.output_state.push_back(r->null(5, i) ? std::string() : r->str(5, i));
    }
    for (const auto& id : run_ids) {
        auto it = by_id.find(id);
        if (it == by_id.end()) continue;
        it->second.run_id = id;
        out.push_back(std::move(it->second));
        by_id.erase(it);
    }
    return out;
}

std::vector<Store::LayerProfileRow> Store::layer_profiles(const std::string& norm_in) const {
    std::string norm = norm_in;
    if (norm.empty()) {
        auto m = impl_->query(
            "SELECT coalesce(norm, '') AS nm, count(*) AS c FROM runs WHERE run_id IN (SELECT DISTINCT run_id FROM token_layers) "
            "GROUP BY nm ORDER BY c DESC, nm LIMIT 1");
        if (m->rows() == 0) return {};
        norm = m->str(0, 0);
    }
    // Depth from the label and the model's block count: LayerId::depth (metrics/layer_id.hpp), so
    // block:L−1 (before the final norm) and hf:L (after it) are told apart; a label that is no
    // layer id gets NaN and sorts last.
    std::string sql = "SELECT r.model, tl.layer, coalesce(any_value(m.n_layer), -1), count(DISTINCT tl.run_id)";
    for (const char* c : {"speed", "turning_angle_rad", "ct_t"})
        sql += fmt::format(", median(tl.{0}), quantile_cont(tl.{0}, 0.25), quantile_cont(tl.{0}, 0.75), count(tl.{0})", c);
    sql += " FROM token_layers tl JOIN runs r USING (run_id) LEFT JOIN models m ON m.label = r.model WHERE coalesce(r.norm, '') = " +
           q(norm) + " GROUP BY r.model, tl.layer ORDER BY r.model, tl.layer";
    auto r = impl_->query(sql);
    std::vector<LayerProfileRow> out;
    for (idx_t i = 0; i < r->rows(); ++i) {
        LayerProfileRow row;
        row.model = r->str(0, i);
        row.norm = norm;
        row.layer = r->str(1, i);
        const auto id = metrics::LayerId::try_parse(row.layer);
        row.depth = id ? id->depth(int(r->i64(2, i))) : std::nan("");
        row.runs = r->i64(3, i);
        idx_t c = 4;
        for (Quartiles* s : {&row.speed, &row.turning_angle_rad, &row.ct_t}) {
            s->median = r->dbl(c, i);
            s->q1 = r->dbl(c + 1, i);
            s->q3 = r->dbl(c + 2, i);
            s->n = r->i64(c + 3, i);
            c += 4;
        }
        out.push_back(std::move(row));
    }
    // Per model by depth; at equal depth (block:i and hf:i+1 are one state) hf first, then by label.
    std::stable_sort(out.begin(), out.end(), [](const LayerProfileRow& a, const LayerProfileRow& b) {
        if (a.model != b.model) return a.model < b.model;
        const bool na = std::isnan(a.depth), nb = std::isnan(b.depth);
        if (na != nb) return nb;
        if (!na && a.depth != b.depth) return a.depth < b.depth;
        const bool ha = a.layer.rfind("hf:", 0) == 0, hb = b.layer.rfind("hf:", 0) == 0;
        if (ha != hb) return ha;
        return a.layer < b.layer;
    });
    return out;
}

PanelTable load_panel_table(const fs::path& db) {
    return Store::open(db, {.read_only = true})->panel_table();
}

MergeResult merge(const std::vector<fs::path>& inputs, const fs::path& out) {
    if (inputs.empty()) throw StoreError("merge: no input DB given");
    // Check every input first (read-only), so a refused merge writes nothing.
    std::string hash;
    std::string first;
    std::error_code ec;
    for (const auto& in : inputs) {
        if (fs::exists(out, ec) && fs::equivalent(in, out, ec))
            throw StoreError(fmt::format("merge: input '{}' is the output", in.string()));
        auto s = Store::open(in, {.read_only = true});
        const auto m = s->meta();
        const std::string h = m.count("manifest_hash") ? m.at("manifest_hash") : "";
        if (hash.empty() && first.empty()) hash = h, first = in.string();
        else if (h != hash)
            throw StoreError(fmt::format("merge: '{}' and '{}' come from different panel manifests (grid hash {} ≠ {})",
                                         first, in.string(), hash.substr(0, 12), h.substr(0, 12)));
    }
    std::map<std::string, std::string> meta;
    {
        auto s = Store::open(inputs.front(), {.read_only = true});
        meta = s->meta();
        meta.erase("shard");
        meta.erase("schema_version");
        meta.erase("manifest_hash");
    }
    // Killed at any moment, `out` is as before or as after: an existing output takes every input
    // in one transaction; a new one is built under a temporary name next to it (schema, rows,
    // checkpoint on close) and then linked to its name.
    const bool fresh = !fs::exists(out, ec);
    const fs::path dir = out.parent_path();
    const fs::path target = fresh ? dir / fmt::format(".{}.merging", out.filename().string()) : out;
    if (fresh && fs::exists(target, ec)) {
        // Left by a killed merge, unless another merge into the same new file holds it now.
        if (locked_by_other_process(target))
            throw StoreError(fmt::format("merge: '{}' is being written by another `phasemap merge` into '{}'", target.string(),
                                         out.string()));
        fs::remove(target, ec);
        fs::remove(fs::path(target.string() + ".wal"), ec);
    }
    MergeResult res;
    try {
        auto o = Store::open(target, {.read_only = false, .manifest_hash = hash, .meta = meta});
        auto& im = *o->impl_;
        std::vector<std::string> aliases;
        try {
            for (size_t i = 0; i < inputs.size(); ++i) {
                const std::string alias = fmt::format("pm_src{}", i);
                im.exec(fmt::format("ATTACH {} AS {} (READ_ONLY)", q(fs::absolute(inputs[i]).string()), alias));
                aliases.push_back(alias);
                // Same label must mean the same model file, across the inputs and the output.
                auto c = im.query(fmt::format("SELECT s.label FROM {}.models s JOIN models m USING (label) WHERE s.sha256 <> m.sha256", alias));
                if (c->rows() > 0)
                    throw StoreError(fmt::format("merge: model '{}' has another file in '{}' than in '{}'", c->str(0, 0), inputs[i].string(), out.string()));
                for (size_t k = 0; k < i; ++k) {
                    auto c2 = im.query(fmt::format("SELECT s.label FROM {}.models s JOIN {}.models m USING (label) WHERE s.sha256 <> m.sha256",
                                                   alias, aliases[k]));
                    if (c2->rows() > 0)
                        throw StoreError(fmt::format("merge: model '{}' has another file in '{}' than in '{}'", c2->str(0, 0),
                                                     inputs[i].string(), inputs[k].string()));
                }
            }
            im.in_transaction([&] {
                for (size_t i = 0; i < inputs.size(); ++i) {
                    const std::string& alias = aliases[i];
                    if (i > 0) crash_point("merge.between_inputs");
                    auto n = im.query(fmt::format("SELECT count(*) FILTER (WHERE run_id IN (SELECT run_id FROM runs)), count(*) FROM {}.runs", alias));
                    const int64_t present = n->i64(0, 0), total = n->i64(1, 0);
                    im.exec(fmt::format("INSERT INTO models SELECT * FROM {0}.models WHERE label NOT IN (SELECT label FROM models)", alias));
                    im.exec(fmt::format("CREATE TEMP TABLE pm_new AS SELECT run_id FROM {}.runs WHERE run_id NOT IN (SELECT run_id FROM runs)", alias));
                    im.exec(fmt::format("INSERT INTO runs BY NAME SELECT * FROM {}.runs WHERE run_id IN (SELECT run_id FROM pm_new)", alias));
                    crash_point("merge.between_statements");
                    im.exec(fmt::format("INSERT INTO tokens BY NAME SELECT * FROM {}.tokens WHERE run_id IN (SELECT run_id FROM pm_new)", alias));
                    // BY NAME: a version-2 input has no LayerId columns; they are filled from the labels.
                    im.exec(fmt::format("INSERT INTO token_layers BY NAME SELECT * FROM {}.token_layers WHERE run_id IN (SELECT run_id FROM pm_new)", alias));
                    fill_layer_columns(im, "tl.layer_kind IS NULL AND tl.run_id IN (SELECT run_id FROM pm_new)");
                    im.exec("DROP TABLE pm_new");
                    res.runs_added += total - present;
                    res.runs_present += present;
                }
                crash_point("merge.before_commit");
            });
        } catch (...) {
            for (const auto& a : aliases) try { im.exec("DETACH " + a); } catch (...) {}
            throw;
        }
        for (const auto& a : aliases) im.exec("DETACH " + a);
        crash_point("merge.after_commit");
        if (fresh) im.exec("CHECKPOINT");
    } catch (...) {
        if (fresh) {
            fs::remove(target, ec);
            fs::remove(fs::path(target.string() + ".wal"), ec);
        }
        throw;
    }
    if (fresh) {
        // The store is closed and checkpointed: the file is complete under its temporary name.
        if (fs::exists(fs::path(target.string() + ".wal"), ec))
            throw StoreError(fmt::format("merge: '{}' kept a write-ahead log after closing; not renaming it to '{}'",
                                         target.string(), out.string()));
        // link, not rename: an output that another process created meanwhile is not replaced.
        if (!move_no_replace(target, out)) {
            const int err = errno;
            if (err == EEXIST)
                throw StoreError(fmt::format("merge: '{}' was created by another process during the merge; nothing was merged "
                                             "into it: run the merge again",
                                             out.string()));
            throw StoreError(fmt::format("merge: cannot create '{}': {}", out.string(), std::strerror(err)));
        }
        sync_dir(dir);
        crash_point("merge.after_rename");
    }
    return res;
}

void set_meta_for_test(const fs::path& db, const std::string& key, const std::string& value) {
    auto im = open_raw(db, false);
    im->exec(fmt::format("INSERT OR REPLACE INTO meta VALUES ({}, {})", q(key), q(value)));
}

void exec_for_test(const fs::path& db, const std::string& sql) { open_raw(db, false)->exec(sql); }

}  // namespace phasemap::store
