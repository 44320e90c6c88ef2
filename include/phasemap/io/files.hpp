// The shared file mechanisms every verb uses for its inputs and outputs (docs/hardening.md,
// "Bad-input classes"):
//  * inputs: only regular files are read, with a size cap checked before reading;
//  * outputs: one path check (not empty, not a directory, folder exists, not the same file —
//    device and inode — as any input), and one atomic writer: the file is written in a hidden
//    temporary folder inside the target folder, fsynced, closed with its status checked and
//    renamed into place; the temporary folder is removed on error, on destruction without
//    commit, and on SIGINT/SIGTERM (the handler removes it, then the signal ends the process);
//  * JSON: one reader that limits the nesting depth before parsing and names the file in errors.
//
// Owns: a TempArea owns its hidden folder (removed with it, and by the signal handler); an AtomicFile owns
// its temporary file until commit(). Lifetimes: path references returned live as long as the object. Throws:
// std::runtime_error naming the path and what it is for.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace phasemap::io {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- inputs
// Text inputs (prompt files, CSV, TOML, JSON) larger than this are refused before reading.
inline constexpr uint64_t kMaxTextInput = uint64_t(256) << 20;  // 256 MiB

// Throws std::runtime_error naming `what` and the path when `p` is missing, a directory, or not a
// regular file (a device, FIFO or socket: /dev/zero would be read forever).
void check_input_file(const fs::path& p, std::string_view what);
// The whole regular file; refuses files above `max_bytes` (checked on the file's size first).
std::string read_input_file(const fs::path& p, std::string_view what, uint64_t max_bytes = kMaxTextInput);

// ---------------------------------------------------------------- outputs
// True when both paths name one existing file (same device and inode), however spelt.
bool same_file(const fs::path& a, const fs::path& b);

// The output-path check of every writing verb: `out` is not empty, not a directory, its folder
// exists, and it is not the same file as any of `inputs` (missing inputs are ignored). `what`
// names the option in the message (e.g. "-o").
void check_output_path(const fs::path& out, const std::vector<fs::path>& inputs, std::string_view what = "output");

// A hidden temporary folder `.<name>.tmp-XXXXXX` next to `target`, removed (one level deep) when
// the object dies or the process gets SIGINT/SIGTERM. Writers whose library writes by path
// (libzip, gguf, llama.cpp's quantiser, NPY parts) put their files into it.
class TempArea;

// Removes every live temporary folder now (async-signal-safe: only unlinkat/rmdir). The cleanup
// handler installed by the first TempArea calls it; a verb with its own SIGINT/SIGTERM handler
// (panel run) calls it before the process ends, so no handler order leaves temporaries behind.
void remove_temporaries_now() noexcept;

class TempArea {
public:
    explicit TempArea(const fs::path& target);
    ~TempArea();
    TempArea(const TempArea&) = delete;
    TempArea& operator=(const TempArea&) = delete;
    const fs::path& dir() const { return dir_; }
    // Renames `file` (inside dir()) onto `target` after fsyncing it, then fsyncs the folder.
    void commit_file(const fs::path& file, const fs::path& target);

private:
    fs::path dir_;
    int slot_ = -1;
};

// One file written atomically. write() appends (checked); commit() flushes, fsyncs, closes
// (checked) and renames onto the target. Without commit() nothing appears at the target.
class AtomicFile {
public:
    explicit AtomicFile(fs::path target);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    // The temporary file, for libraries that write by path (then call commit() without write()).
    const fs::path& temp_path() const { return tmp_; }
    const fs::path& target() const { return target_; }
    void write(const void* data, size_t n);
    void write(std::string_view s) { write(s.data(), s.size()); }
    void commit();

private:
    fs::path target_, tmp_;
    TempArea area_;
    int fd_ = -1;
};

// Writes `content` to `path` atomically (AtomicFile).
void write_file_atomic(const fs::path& path, const std::string& content);

// ---------------------------------------------------------------- JSON
// Deeper nesting than this is refused before parsing (a 10^5-deep file would exhaust the stack).
inline constexpr size_t kMaxJsonDepth = 256;
// Throws std::runtime_error "<what>: JSON nested deeper than …" when `text` nests deeper.
void check_json_depth(std::string_view text, std::string_view what, size_t max_depth = kMaxJsonDepth);
// Depth check, then parse; errors name `what` (a file name) and say what is wrong in words.
nlohmann::json parse_json(std::string_view text, std::string_view what);
// A regular JSON file (read_input_file + parse_json).
nlohmann::json read_json_file(const fs::path& p, std::string_view what = "JSON file");

}  // namespace phasemap::io
