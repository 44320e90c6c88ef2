// `phasemap quantize IN.gguf OUT.gguf --type Q8_0`: quantised variants through libllama.
#include <fmt/core.h>

#include <memory>

#include "phasemap/capture/quantize.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct QuantizeArgs {
    std::string in, out, type;
    int threads = 0;
    bool quiet = false;
};

Verb reg{"quantize", "Write a quantised variant of a GGUF model (llama.cpp's quantisation)", [](CLI::App& app) {
    auto a = std::make_shared<QuantizeArgs>();
    app.add_option("input", a->in, "GGUF model (F32/F16/BF16)")->required()->check(kPath);
    app.add_option("output", a->out, "quantised GGUF to write")->required()->check(kPath);
    std::string types;
    for (const auto& t : capture::quantize_type_names()) types += (types.empty() ? "" : ", ") + t;
    app.add_option("--type", a->type, "target type: " + types)->required();
    app.add_option("-t,--threads", a->threads, "threads (0 = $PHASEMAP_THREADS or the physical cores)")->capture_default_str()->check(in(opt::kThreads));
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a]() -> int {
        try {
            const auto r = capture::quantize_model(a->in, a->out, a->type, a->threads);
            if (!a->quiet)
                fmt::print(stderr, "wrote {} ({}, {:.1f} MiB from {:.1f} MiB)\n", a->out, r.type, double(r.out_bytes) / 1048576.0,
                           double(r.in_bytes) / 1048576.0);
        } catch (const std::exception& e) {
            throw UserError(e.what());
        }
        return 0;
    };
}};

}  // namespace
}  // namespace phasemap::cli
