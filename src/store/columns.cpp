// Columnar reads of the results DB (include/phasemap/store/columns.hpp).
#include "phasemap/store/columns.hpp"

#include <cmath>

#include "store_internal.hpp"

namespace phasemap::store {

using internal::ident;

namespace {

Column::Kind kind_of(duckdb_type t) {
    switch (t) {
        case DUCKDB_TYPE_BOOLEAN: return Column::Kind::boolean;
        case DUCKDB_TYPE_TINYINT:
        case DUCKDB_TYPE_SMALLINT:
        case DUCKDB_TYPE_INTEGER:
        case DUCKDB_TYPE_BIGINT: return Column::Kind::int64;
        case DUCKDB_TYPE_UTINYINT:
        case DUCKDB_TYPE_USMALLINT:
        case DUCKDB_TYPE_UINTEGER:
        case DUCKDB_TYPE_UBIGINT: return Column::Kind::uint64;
        case DUCKDB_TYPE_FLOAT: return Column::Kind::float32;
        case DUCKDB_TYPE_DOUBLE: return Column::Kind::float64;
        default: return Column::Kind::text;
    }
}

}  // namespace

Columns Store::columns(const std::string& sql) const {
    auto r = impl_->query(sql);
    Columns out;
    out.rows = size_t(r->rows());
    const idx_t nc = r->cols();
    for (idx_t c = 0; c < nc; ++c) {
        Column col;
        col.name = r->colname(c);
        const duckdb_type t = duckdb_column_type(&r->r, c);
        col.kind = kind_of(t);
        // DuckDB's type name for the numeric types and VARCHAR; any other type is read as text.
        static const char* const names[] = {"INVALID", "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT",
                                            "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE"};
        col.sql_type = t >= DUCKDB_TYPE_INVALID && t <= DUCKDB_TYPE_DOUBLE ? names[t] : (t == DUCKDB_TYPE_VARCHAR ? "VARCHAR" : "OTHER");
        const size_t n = out.rows;
        col.valid.resize(n);
        switch (col.kind) {
            case Column::Kind::boolean: col.b.resize(n); break;
            case Column::Kind::int64: col.i64.resize(n); break;
            case Column::Kind::uint64: col.u64.resize(n); break;
            case Column::Kind::float32: col.f32.resize(n); break;
            case Column::Kind::float64: col.f64.resize(n); break;
            case Column::Kind::text: col.text.resize(n); break;
        }
        for (size_t i = 0; i < n; ++i) {
            const bool ok = !r->null(c, i);
            col.valid[i] = ok ? 1 : 0;
            switch (col.kind) {
                case Column::Kind::boolean: col.b[i] = ok && duckdb_value_boolean(&r->r, c, i); break;
                case Column::Kind::int64: col.i64[i] = ok ? duckdb_value_int64(&r->r, c, i) : 0; break;
                case Column::Kind::uint64: col.u64[i] = ok ? duckdb_value_uint64(&r->r, c, i) : 0; break;
                case Column::Kind::float32: col.f32[i] = ok ? duckdb_value_float(&r->r, c, i) : std::nanf(""); break;
                case Column::Kind::float64: col.f64[i] = ok ? duckdb_value_double(&r->r, c, i) : std::nan(""); break;
                case Column::Kind::text: col.text[i] = r->str(c, i); break;
            }
        }
        out.columns.push_back(std::move(col));
    }
    return out;
}

Columns read_columns(const Store& s, const std::string& sql) { return s.columns(sql); }

Columns read_table(const Store& s, const std::string& table, const std::string& order_by) {
    const Columns names = s.columns("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name");
    bool found = false;
    std::string list;
    for (const auto& t : names.columns.at(0).text) {
        if (t == table) found = true;
        list += (list.empty() ? "" : ", ") + t;
    }
    if (!found) throw StoreError(fmt::format("results DB '{}' has no table '{}' (tables: {})", s.path().string(), table, list));
    return s.columns("SELECT * FROM " + ident(table) + (order_by.empty() ? "" : " ORDER BY " + order_by));
}

}  // namespace phasemap::store
