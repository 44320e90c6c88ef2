// Input checks, the output-path check, the atomic writer with its SIGINT/SIGTERM cleanup, and the
// depth-limited JSON reader (phasemap/io/files.hpp).
#include "phasemap/io/files.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace phasemap::io {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

std::string errno_text(int e) { return std::strerror(e); }

// ------------------------------------------------------------------ signal cleanup
// Temporary folders alive now. The handler reads them without locks: a slot's path is written
// before `used` is set and cleared after `used` is reset.
constexpr int kSlots = 256;
constexpr size_t kPathMax = 4096;
struct Slot {
    std::atomic<int> used{0};
    char path[kPathMax];
};
Slot g_slots[kSlots];
std::mutex g_slots_mu;
std::atomic<bool> g_handlers{false};

struct Dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

// Removes the files in `dir` and the folder itself, with system calls only (async-signal-safe).
void remove_flat_dir(const char* dir) {
    const int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        alignas(8) char buf[8192];
        for (int pass = 0; pass < 16; ++pass) {
            bool removed = false;
            ::lseek(fd, 0, SEEK_SET);
            for (;;) {
                const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
                if (n <= 0) break;
                for (long off = 0; off < n;) {
                    auto* d = reinterpret_cast<Dirent64*>(buf + off);
                    const char* nm = d->d_name;
                    if (!(nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0)))) {
                        ::unlinkat(fd, nm, 0);
                        removed = true;
                    }
                    off += d->d_reclen;
                }
            }
            if (!removed) break;
        }
        ::close(fd);
    }
    ::rmdir(dir);
}

void on_terminate_signal(int sig) {
    remove_temporaries_now();
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

// Installs the cleanup handler for SIGINT and SIGTERM where nobody else handles them (a verb
// with its own handler keeps it).
void install_handlers() {
    if (g_handlers.exchange(true)) return;
    for (int sig : {SIGINT, SIGTERM}) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;
        struct sigaction sa {};
        sa.sa_handler = on_terminate_signal;
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
        ::sigaction(sig, &sa, nullptr);
    }
}

// A slot is free (0), reserved for a folder being created (2), or holds a live folder (1). The
// creating thread reserves a slot before mkdtemp and publishes the path after it, with SIGINT and
// SIGTERM blocked in between; a handler running on another thread waits for a reserved slot to be
// published, so a folder is never created unseen by the cleanup.
constexpr int kFree = 0, kLive = 1, kCreating = 2;

int reserve_slot() {
    install_handlers();
    std::lock_guard lk(g_slots_mu);
    for (int i = 0; i < kSlots; ++i) {
        if (g_slots[i].used.load(std::memory_order_relaxed) != kFree) continue;
        g_slots[i].path[0] = 0;
        g_slots[i].used.store(kCreating, std::memory_order_release);
        return i;
    }
    return -1;
}

// The folder `dir` created in slot `slot` (or, when dir is empty, nothing was created).
void publish_slot(int slot, const std::string& dir) {
    if (slot < 0) return;
    std::lock_guard lk(g_slots_mu);
    if (dir.empty() || dir.size() + 1 > kPathMax) {
        g_slots[slot].used.store(kFree, std::memory_order_release);
        return;
    }
    std::memcpy(g_slots[slot].path, dir.c_str(), dir.size() + 1);
    g_slots[slot].used.store(kLive, std::memory_order_release);
}

void unregister_dir(int slot) {
    if (slot < 0) return;
    std::lock_guard lk(g_slots_mu);
    g_slots[slot].used.store(kFree, std::memory_order_release);
}

// SIGINT and SIGTERM blocked in this thread for a scope (the window between mkdtemp and publish).
struct BlockTerminateSignals {
    sigset_t old{};
    BlockTerminateSignals() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        ::pthread_sigmask(SIG_BLOCK, &set, &old);
    }
    ~BlockTerminateSignals() { ::pthread_sigmask(SIG_SETMASK, &old, nullptr); }
};

fs::path folder_of(const fs::path& p) { return p.parent_path().empty() ? fs::path(".") : p.parent_path(); }

void fsync_path(const fs::path& p, bool dir, const fs::path& target) {
    const int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) fail(fmt::format("cannot write '{}': {}", target.string(), errno_text(errno)));
    const int rc = ::fsync(fd);
    const int e = errno;
    ::close(fd);
    // Folders on some file systems refuse fsync (EINVAL); the data itself was synced.
    if (rc != 0 && !(dir && (e == EINVAL || e == EROFS)))
        fail(fmt::format("cannot write '{}': {}", target.string(), errno_text(e)));
}

}  // namespace

void remove_temporaries_now() noexcept {
    // Another thread may still be writing into a temporary folder while a signal handler runs
    // here (the signal can land on any thread): a file it creates after the last pass keeps the
    // folder from being removed. Retry until the folder is gone, for at most ~1 s per folder
    // (system calls only: async-signal-safe).
    for (Slot& s : g_slots) {
        int state = s.used.load(std::memory_order_acquire);
        // A folder being created on another thread (that thread blocks these signals meanwhile):
        // wait for its path, for at most ~1 s.
        for (int wait = 0; state == kCreating && wait < 100; ++wait) {
            struct timespec pause {0, 10 * 1000 * 1000};
            ::nanosleep(&pause, nullptr);
            state = s.used.load(std::memory_order_acquire);
        }
        if (state != kLive) continue;
        for (int attempt = 0; attempt < 100; ++attempt) {
            remove_flat_dir(s.path);
            struct stat st {};
            if (::lstat(s.path, &st) != 0 && errno == ENOENT) break;
            struct timespec pause {0, 10 * 1000 * 1000};
            ::nanosleep(&pause, nullptr);
        }
    }
}

// ------------------------------------------------------------------ inputs
void check_input_file(const fs::path& p, std::string_view what) {
    if (p.empty()) fail(fmt::format("{}: the path is empty", what));
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
        if (errno == ENOENT) fail(fmt::format("cannot read {} '{}': no such file", what, p.string()));
        fail(fmt::format("cannot read {} '{}': {}", what, p.string(), errno_text(errno)));
    }
    if (S_ISDIR(st.st_mode)) fail(fmt::format("cannot read {} '{}': it is a directory, expected a file", what, p.string()));
    if (!S_ISREG(st.st_mode))
        fail(fmt::format("cannot read {} '{}': not a regular file (a device, FIFO or socket)", what, p.string()));
}

std::string read_input_file(const fs::path& p, std::string_view what, uint64_t max_bytes) {
    check_input_file(p, what);
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(fmt::format("cannot read {} '{}': {}", what, p.string(), errno_text(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(fmt::format("{} '{}' is not a regular file", what, p.string()));
    }
    if (uint64_t(st.st_size) > max_bytes) {
        ::close(fd);
        fail(fmt::format("cannot read {} '{}': it is {} bytes, more than the limit of {} MiB", what, p.string(), st.st_size, max_bytes >> 20));
    }
    std::string out(size_t(st.st_size), '\0');
    size_t got = 0;
    while (got < out.size()) {
        const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            fail(fmt::format("cannot read {} '{}': {}", what, p.string(), errno_text(e)));
        }
        if (n == 0) break;  // shrank while reading
        got += size_t(n);
    }
    ::close(fd);
    out.resize(got);
    return out;
}

// ------------------------------------------------------------------ outputs
bool same_file(const fs::path& a, const fs::path& b) {
    struct stat sa {}, sb {};
    if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void check_output_path(const fs::path& out, const std::vector<fs::path>& inputs, std::string_view what) {
    if (out.empty()) fail(fmt::format("{}: the output path is empty", what));
    struct stat st {};
    if (::stat(out.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) fail(fmt::format("{} '{}': it is a directory, expected a file path", what, out.string()));
        if (!S_ISREG(st.st_mode))
            fail(fmt::format("{} '{}' exists and is not a regular file (a device, FIFO or socket); choose a file path", what,
                             out.string()));
    }
    for (const fs::path& in : inputs)
        if (!in.empty() && same_file(out, in))
            fail(fmt::format("{} '{}' is the same file as the input '{}'; writing it would destroy the input — choose another path",
                             what, out.string(), in.string()));
    const fs::path dir = folder_of(out);
    struct stat sd {};
    if (::stat(dir.c_str(), &sd) != 0) fail(fmt::format("{} '{}': folder '{}' does not exist", what, out.string(), dir.string()));
    if (!S_ISDIR(sd.st_mode)) fail(fmt::format("{} '{}': '{}' is not a folder", what, out.string(), dir.string()));
    // Probe: a temporary folder is what the writer will need (access(2) says yes to root even on
    // a read-only file system).
    TempArea probe(out);
}

TempArea::TempArea(const fs::path& target) {
    const fs::path dir = folder_of(target);
    std::string base = target.filename().string();
    if (base.size() > 120) base.resize(120);
    std::string tpl = (dir / ("." + base + ".tmp-XXXXXX")).string();
    {
        const BlockTerminateSignals block;
        const int slot = reserve_slot();
        if (!::mkdtemp(tpl.data())) {
            const int e = errno;
            publish_slot(slot, "");
            struct stat sd {};
            if (::stat(dir.c_str(), &sd) != 0) fail(fmt::format("cannot write '{}': folder '{}' does not exist", target.string(), dir.string()));
            fail(fmt::format("cannot write '{}': folder '{}' is not writable ({})", target.string(), dir.string(), errno_text(e)));
        }
        publish_slot(slot, tpl);
        slot_ = tpl.size() + 1 > kPathMax ? -1 : slot;
    }
    dir_ = tpl;
}

TempArea::~TempArea() {
    remove_flat_dir(dir_.c_str());
    unregister_dir(slot_);
}

void TempArea::commit_file(const fs::path& file, const fs::path& target) {
    fsync_path(file, false, target);
    // Test hook (tests/bad-inputs/writers.py): hold the complete temporary file for a while before
    // the rename, so that a signal can be delivered at a known moment of every writer.
    if (const char* d = std::getenv("PHASEMAP_TEST_COMMIT_DELAY_MS"); d && *d) ::usleep(useconds_t(std::strtoul(d, nullptr, 10) * 1000));
    if (::rename(file.c_str(), target.c_str()) != 0)
        fail(fmt::format("cannot write '{}': {}", target.string(), errno_text(errno)));
    fsync_path(folder_of(target), true, target);
}

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)), area_(target_) {
    tmp_ = area_.dir() / "data";
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) fail(fmt::format("cannot write '{}': {}", target_.string(), errno_text(errno)));
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
}

void AtomicFile::write(const void* data, size_t n) {
    if (fd_ < 0) throw std::logic_error("AtomicFile: write after commit");
    const char* p = static_cast<const char*>(data);
    while (n) {
        const ssize_t w = ::write(fd_, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fail(fmt::format("cannot write '{}': {}", target_.string(), errno_text(errno)));
        p += w;
        n -= size_t(w);
    }
}

void AtomicFile::commit() {
    if (fd_ >= 0) {
        const int rc = ::fsync(fd_);
        const int e = errno;
        const int rc2 = ::close(fd_);
        const int e2 = errno;
        fd_ = -1;
        if (rc != 0) fail(fmt::format("cannot write '{}': {}", target_.string(), errno_text(e)));
        if (rc2 != 0) fail(fmt::format("cannot write '{}': {}", target_.string(), errno_text(e2)));
    }
    area_.commit_file(tmp_, target_);
}

void write_file_atomic(const fs::path& path, const std::string& content) {
    AtomicFile f(path);
    f.write(content);
    f.commit();
}

// ------------------------------------------------------------------ JSON
void check_json_depth(std::string_view text, std::string_view what, size_t max_depth) {
    size_t depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth) fail(fmt::format("{}: JSON nested deeper than {} levels; refusing to parse it", what, max_depth));
        } else if ((c == ']' || c == '}') && depth) --depth;
    }
}

nlohmann::json parse_json(std::string_view text, std::string_view what) {
    check_json_depth(text, what);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        // nlohmann's text starts with "[json.exception.parse_error.101] "; keep the words.
        std::string msg = e.what();
        if (const size_t k = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && k != std::string::npos) msg = msg.substr(k + 2);
        fail(fmt::format("{}: not valid JSON ({})", what, msg));
    }
}

nlohmann::json read_json_file(const fs::path& p, std::string_view what) {
    return parse_json(read_input_file(p, what), fmt::format("{} '{}'", what, p.string()));
}

}  // namespace phasemap::io
