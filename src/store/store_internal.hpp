// Internals of the results store shared by its translation units (store.cpp, audits.cpp): the
// DuckDB connection, result and appender wrappers. Only src/store includes this (and duckdb.h).
#pragma once
#include <duckdb.h>
#include <fmt/core.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "phasemap/store/store.hpp"

namespace phasemap::store {

namespace internal {

inline std::string q(const std::string& s) {  // SQL string literal
    std::string o = "'";
    for (char c : s) {
        if (c == '\'') o += "''";
        else o.push_back(c);
    }
    return o + "'";
}
inline std::string ident(const std::string& s) {  // SQL identifier
    std::string o = "\"";
    for (char c : s) {
        if (c == '"') o += "\"\"";
        else o.push_back(c);
    }
    return o + "\"";
}

struct Result {
    duckdb_result r{};
    bool owned = false;
    ~Result() {
        if (owned) duckdb_destroy_result(&r);
    }
    idx_t rows() { return duckdb_row_count(&r); }
    idx_t cols() { return duckdb_column_count(&r); }
    bool null(idx_t c, idx_t row) { return duckdb_value_is_null(&r, c, row); }
    std::string str(idx_t c, idx_t row) {
        if (null(c, row)) return {};
        char* v = duckdb_value_varchar(&r, c, row);
        std::string s = v ? v : "";
        duckdb_free(v);
        return s;
    }
    double dbl(idx_t c, idx_t row) { return null(c, row) ? std::nan("") : duckdb_value_double(&r, c, row); }
    int64_t i64(idx_t c, idx_t row) { return null(c, row) ? 0 : duckdb_value_int64(&r, c, row); }
    uint64_t u64(idx_t c, idx_t row) { return null(c, row) ? 0 : duckdb_value_uint64(&r, c, row); }
    std::string colname(idx_t c) { return duckdb_column_name(&r, c); }
};

}  // namespace internal

struct Store::Impl {
    fs::path path;
    duckdb_database db = nullptr;
    duckdb_connection con = nullptr;
    bool read_only = false;

    ~Impl() {
        if (con) duckdb_disconnect(&con);
        if (db) duckdb_close(&db);
    }

    void exec(const std::string& sql) {
        internal::Result r;
        const bool ok = duckdb_query(con, sql.c_str(), &r.r) == DuckDBSuccess;
        r.owned = true;
        if (!ok) throw StoreError(fmt::format("results DB '{}': {}", path.string(), duckdb_result_error(&r.r)));
    }
    std::unique_ptr<internal::Result> query(const std::string& sql) {
        auto r = std::make_unique<internal::Result>();
        const bool ok = duckdb_query(con, sql.c_str(), &r->r) == DuckDBSuccess;
        r->owned = true;
        if (!ok) throw StoreError(fmt::format("results DB '{}': {}", path.string(), duckdb_result_error(&r->r)));
        return r;
    }
    // Runs body() inside one transaction: committed when it returns, rolled back when it throws.
    template <class F>
    void in_transaction(F&& body) {
        exec("BEGIN TRANSACTION");
        try {
            body();
            exec("COMMIT");
        } catch (...) {
            try { exec("ROLLBACK"); } catch (...) {}
            throw;
        }
    }
    std::map<std::string, std::string> meta() {
        std::map<std::string, std::string> m;
        auto r = query("SELECT key, value FROM meta");
        for (idx_t i = 0; i < r->rows(); ++i) m[r->str(0, i)] = r->str(1, i);
        return m;
    }
};

namespace internal {

// DuckDB's VARCHAR holds UTF-8 only; generated tokens may be partial byte sequences (byte-level
// BPE). Invalid sequences become U+FFFD (token ids stay exact in the tokens table).
inline std::string valid_utf8(const std::string& s) {
    std::string o;
    o.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && i + n <= s.size();
        for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
        if (ok && n > 1) {
            uint32_t cp = c & (0x7f >> n);
            for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
            const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min[n] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (ok && c == 0) ok = false;  // NUL is not allowed either
        if (ok) {
            o.append(s, i, n);
            i += n;
        } else {
            o += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return o;
}

struct Appender {
    duckdb_appender a = nullptr;
    std::string table;
    fs::path path;
    Appender(duckdb_connection con, const char* t, const fs::path& p) : table(t), path(p) {
        if (duckdb_appender_create(con, nullptr, t, &a) != DuckDBSuccess) {
            std::string e = a ? duckdb_appender_error(a) : "cannot create appender";
            throw StoreError(fmt::format("results DB '{}': {}", p.string(), e));
        }
    }
    ~Appender() {
        if (a) duckdb_appender_destroy(&a);
    }
    void check(duckdb_state s) {
        if (s != DuckDBSuccess)
            throw StoreError(fmt::format("results DB '{}': writing {} failed: {}", path.string(), table, duckdb_appender_error(a)));
    }
    void str(const std::string& s) {
        const std::string v = valid_utf8(s);
        check(duckdb_append_varchar_length(a, v.data(), v.size()));
    }
    void str_or_null(const std::string& s) { s.empty() ? null() : str(s); }
    void i64(int64_t v) { check(duckdb_append_int64(a, v)); }
    void u64(uint64_t v) { check(duckdb_append_uint64(a, v)); }
    void b(bool v) { check(duckdb_append_bool(a, v)); }
    void dbl(double v) { std::isfinite(v) ? check(duckdb_append_double(a, v)) : null(); }
    void null() { check(duckdb_append_null(a)); }
    void end_row() { check(duckdb_appender_end_row(a)); }
    void close() {
        check(duckdb_appender_close(a));
    }
};

}  // namespace internal
}  // namespace phasemap::store
