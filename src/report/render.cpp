// render_html(): the template with the libraries, report.js and the data inlined.
// export_figures(): the same figure specs rendered by vega's SVG renderer under Node.
#include <fmt/core.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "assets.hpp"
#include "phasemap/io/files.hpp"
#include "phasemap/report/report.hpp"

namespace phasemap::report {

namespace {

void replace_once(std::string& s, std::string_view key, std::string_view with) {
    const size_t p = s.find(key);
    if (p == std::string::npos) throw std::runtime_error(fmt::format("report template has no {}", key));
    s.replace(p, key.size(), with);
}

void replace_all(std::string& s, std::string_view key, std::string_view with) {
    for (size_t p = s.find(key); p != std::string::npos; p = s.find(key, p + with.size())) s.replace(p, key.size(), with);
}

// Inline JavaScript must not close its <script> element.
std::string_view checked_script(std::string_view js, std::string_view name) {
    if (js.find("</script") != std::string_view::npos || js.find("<!--") != std::string_view::npos)
        throw std::runtime_error(fmt::format("{} cannot be inlined: it contains </script or <!--", name));
    return js;
}

std::string html_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

std::filesystem::path make_temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "phasemap-report.XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory");
    return tmpl;
}

void write_file(const std::filesystem::path& p, std::string_view s) {
    std::ofstream f(p, std::ios::binary);
    f.write(s.data(), static_cast<std::streamsize>(s.size()));
    if (!f) throw std::runtime_error(fmt::format("cannot write {}", p.string()));
}

}  // namespace

std::string render_html(const nlohmann::json& data) {
    std::string page(assets::template_html());
    // Inside <script type="application/json"> only '<' needs care; it occurs only in strings.
    std::string js = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    replace_all(js, "<", "\\u003c");
    const std::string title = html_escape(data.value("title", std::string("phasemap report")));
    replace_all(page, "@@TITLE@@", title);
    // Data first: the libraries are large and never contain the placeholders.
    replace_once(page, "@@DATA@@", js);
    replace_once(page, "@@REPORT_JS@@", checked_script(assets::report_js(), "report.js"));
    replace_once(page, "@@ASSET_VEGA_EMBED@@", checked_script(assets::vega_embed(), "vega-embed"));
    replace_once(page, "@@ASSET_VEGA_LITE@@", checked_script(assets::vega_lite(), "vega-lite"));
    replace_once(page, "@@ASSET_VEGA@@", checked_script(assets::vega(), "vega"));
    return page;
}

std::vector<std::string> export_figures(const nlohmann::json& data, const std::optional<std::filesystem::path>& svg_dir,
                                        const std::optional<std::filesystem::path>& png_dir) {
    namespace fs = std::filesystem;
    if (!svg_dir && !png_dir) return {};
    const fs::path tmp = make_temp_dir();
    struct Cleanup {
        fs::path p;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(p, ec);
        }
    } cleanup{tmp};
    write_file(tmp / "vega.min.js", assets::vega());
    write_file(tmp / "vega-lite.min.js", assets::vega_lite());
    write_file(tmp / "report.js", assets::report_js());
    write_file(tmp / "export.js", assets::export_js());
    write_file(tmp / "data.json", data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    // Node writes into the temporary folder; each figure then reaches its folder through the
    // atomic writer (io::write_file_atomic), so no half-written figure appears under its name.
    const fs::path svg_out = tmp / "svg", png_out = tmp / "png";
    for (const auto& d : {std::optional<fs::path>(svg_out), png_dir ? std::optional<fs::path>(png_out) : std::nullopt,
                          svg_dir, png_dir})
        if (d) {
            std::error_code ec;
            fs::create_directories(*d, ec);
            if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", d->string(), ec.message()));
        }
    const char* node_env = std::getenv("PHASEMAP_NODE");
    const std::string node = node_env && *node_env ? node_env : "node";
    std::vector<std::string> args = {node, (tmp / "export.js").string(), (tmp / "data.json").string(), svg_out.string()};
    if (png_dir) args.push_back(png_out.string());
    const fs::path list = tmp / "written.txt";
    args.push_back("--list=" + list.string());
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        fmt::print(stderr, "phasemap: error: cannot run {} (Node.js is needed for --svg/--png; set PHASEMAP_NODE)\n", node);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error(fmt::format("figure export failed (node exit status {})", WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    std::vector<std::string> ids;
    std::ifstream f(list);
    for (std::string line; std::getline(f, line);)
        if (!line.empty()) ids.push_back(line);
    auto read = [](const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        if (!in) throw std::runtime_error(fmt::format("figure export wrote no {}", p.filename().string()));
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    for (const auto& id : ids) {
        if (svg_dir) io::write_file_atomic(*svg_dir / (id + ".svg"), read(svg_out / (id + ".svg")));
        if (png_dir) io::write_file_atomic(*png_dir / (id + ".png"), read(png_out / (id + ".png")));
    }
    return ids;
}

}  // namespace phasemap::report
