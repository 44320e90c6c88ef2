#include "generate_hooks.hpp"

namespace phasemap::cli {
struct AnalyzeHook::Impl { bool on = false; };
AnalyzeHook::AnalyzeHook() : impl_(std::make_unique<Impl>()) {}
AnalyzeHook::~AnalyzeHook() = default;
AnalyzeHook::AnalyzeHook(AnalyzeHook&&) noexcept = default;
AnalyzeHook& AnalyzeHook::operator=(AnalyzeHook&&) noexcept = default;
void AnalyzeHook::add_options(CLI::App&) {}
bool AnalyzeHook::enabled() const { return impl_->on; }
void AnalyzeHook::run(const capture::RunRecord&, size_t) {}
}  // namespace phasemap::cli
