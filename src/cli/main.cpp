// phasemap — entry point: builds the CLI from the registered verbs and maps errors to exit codes.
#include <fmt/core.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>
#include <memory>

#include "thread_options.hpp"
#include "verb.hpp"
#include "phasemap/capture/version.hpp"

namespace phasemap::cli {

std::vector<Verb*>& verbs() {
    static std::vector<Verb*> v;
    return v;
}

Verb::Verb(std::string n, std::string h, Setup s) : name(std::move(n)), help(std::move(h)), setup(std::move(s)) {
    verbs().push_back(this);
}

}  // namespace phasemap::cli

int main(int argc, char** argv) {
    using namespace phasemap::cli;
    // A file-size limit (ulimit -f) makes writes fail with EFBIG, which the atomic writer reports
    // and cleans up, instead of SIGXFSZ killing the process with a half-written temporary.
    std::signal(SIGXFSZ, SIG_IGN);
    CLI::App app{"phasemap — hidden-state dynamics of language models during generation"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string(phasemap::version_string()));

    auto& vs = verbs();
    std::sort(vs.begin(), vs.end(), [](Verb* a, Verb* b) { return a->name < b->name; });
    std::function<int()> action;
    for (Verb* v : vs) {
        CLI::App* sub = app.add_subcommand(v->name, v->help);
        auto act = std::make_shared<std::function<int()>>(v->setup(*sub));
        sub->callback([act, &action] { action = *act; });
    }
    // An unknown verb: name it and list the known ones (CLI11 would only say one is required).
    if (argc > 1 && argv[1][0] != '-' &&
        std::none_of(vs.begin(), vs.end(), [&](const Verb* v) { return v->name == argv[1]; })) {
        std::string names;
        for (const Verb* v : vs) names += (names.empty() ? "" : ", ") + v->name;
        fmt::print(stderr, "phasemap: error: unknown command '{}' (commands: {})\n", argv[1], names);
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help / --version: CLI11 prints them (exit 0). A usage error: one line, like every
        // other error (the bad-input corpus in tests/bad-inputs holds the CLI to this).
        if (e.get_exit_code() == 0) return app.exit(e);
        std::string msg = e.what();
        std::replace(msg.begin(), msg.end(), '\n', ' ');
        fmt::print(stderr, "phasemap: error: {} (see --help)\n", msg);
        return 2;
    }
    // --poll / --prio of the verb; may re-execute the process once with libgomp's spin count.
    try {
        apply_thread_flags(argv);
    } catch (const std::exception& e) {
        fmt::print(stderr, "phasemap: error: {}\n", e.what());
        return 2;
    }
    // Every error below the parser (UserError of a verb, or the library's own exception): its one
    // message, as thrown; nothing re-wraps it on the way up.
    try {
        return action ? action() : 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "phasemap: error: {}\n", e.what());
        return 1;
    }
}
