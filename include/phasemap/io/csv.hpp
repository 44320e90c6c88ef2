// The one CSV reader (RFC 4180): the prompt CSVs of panels (`category,prompt`) and the labelled
// data sets of control-audit / monitor-eval both read their rows through it.
//
// Owns: nothing; rows are owned strings (the input text is not referenced after the call). Throws: as stated
// below.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace phasemap::io {

struct CsvOptions {
    // > 0: a row has at most this many fields; the last one takes the rest of the line — verbatim
    // (commas included) unless it starts with a quote. 0: any number of fields.
    std::size_t max_fields = 0;
    bool comments = false;        // skip rows whose line starts with '#'
    bool quoted_first = true;     // false: the first field is verbatim up to the first comma
};

struct CsvRow {
    std::size_t line = 0;              // 1-based line where the row starts
    std::vector<std::string> fields;
};

// Fields are separated by ','; rows end at LF or CRLF. A field that starts with '"' is quoted:
// "" is a quote, commas and newlines are text, and the closing quote must end the field. A quote
// inside an unquoted field is text. Blank rows (spaces and tabs only) are skipped. Throws
// std::invalid_argument "SOURCE:LINE: problem" for an unterminated quoted field or text after
// a closing quote.
std::vector<CsvRow> parse_csv(std::string_view text, std::string_view source, const CsvOptions& opt = {});

}  // namespace phasemap::io
