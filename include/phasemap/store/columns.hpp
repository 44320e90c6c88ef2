// Columnar reads of the results DB: a table or a read-only query as typed columns, with the
// DuckDB column types (what the Python package turns into numpy arrays / pandas DataFrames without
// pyarrow). src/store/columns.cpp is the DuckDB side; this header exposes no DuckDB type.
//
// Owns: Columns owns every value it read (nothing refers into DuckDB). Throws: StoreError for a bad query.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace phasemap::store {

class Store;

struct Column {
    // How the values are held: BOOLEAN → boolean; TINYINT … BIGINT → int64; UTINYINT … UBIGINT →
    // uint64; FLOAT → float32; DOUBLE → float64; every other type (VARCHAR, TIMESTAMP, JSON, …) →
    // text, as DuckDB renders it as VARCHAR.
    enum class Kind { boolean, int64, uint64, float32, float64, text };
    std::string name;
    std::string sql_type;            // "BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR", … ("OTHER": another type, read as text)
    Kind kind = Kind::text;
    std::vector<uint8_t> valid;      // per row: 1 = a value, 0 = NULL
    std::vector<uint8_t> b;          // boolean
    std::vector<int64_t> i64;        // int64
    std::vector<uint64_t> u64;       // uint64
    std::vector<float> f32;          // float32 (NULL → NaN)
    std::vector<double> f64;         // float64 (NULL → NaN)
    std::vector<std::string> text;   // text (NULL → "")
};

struct Columns {
    size_t rows = 0;
    std::vector<Column> columns;     // in the result's column order
};

// The rows of a read-only SQL query (StoreError with DuckDB's message when it fails).
Columns read_columns(const Store& s, const std::string& sql);
// Every row of one table, ordered by `order_by` (SQL ORDER BY list; "" = as stored). A table the
// DB does not hold is a StoreError naming it and the tables there are.
Columns read_table(const Store& s, const std::string& table, const std::string& order_by = "");

}  // namespace phasemap::store
