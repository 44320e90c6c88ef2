// Small helpers shared by the CLI verbs: reading prompt files, printing token text.
#pragma once
#include <string>
#include <vector>

namespace phasemap::cli {

// The whole regular file (io::read_input_file: a directory, device or FIFO is refused, and so is a
// file above the text-input cap); std::runtime_error naming `what` and the path.
std::string read_text_file(const std::string& path, const char* what);
// A -p value: TEXT itself, or @FILE read whole with one trailing newline removed (as llama.cpp's
// --file does: an editor's final newline is not part of the prompt).
std::string read_prompt_arg(const std::string& spec);
// One prompt per non-empty line (CR-LF tolerated); an error when the file is unreadable or empty.
std::vector<std::string> read_prompt_lines(const std::string& path);
// The shared output-path check (io::check_output_path) for option `option`: not empty, not a
// directory, folder exists and writable, not the same file (device + inode) as any input.
void check_output(const std::string& out, const std::vector<std::string>& inputs, const char* option);
// The thread count a verb will use (`threads`, or $PHASEMAP_THREADS / all cores when 0), checked
// now: a bad PHASEMAP_THREADS must fail before a verb creates any file (e.g. a new results DB).
int checked_threads(int threads);
// Token text for one-line display: newline, tab and other control bytes escaped.
std::string printable(const std::string& s);

}  // namespace phasemap::cli
