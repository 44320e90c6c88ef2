// Online monitor and guard (issue 6 §4): ct_t and output states computed token by token while
// generating, declared triggers, and the actions they fire.
//
// ct_t is computed exactly as METRICS.md §2 (one_minus_cos curvature, raw states) on one captured
// layer (default: the last captured one) from the last three states; the output state of every
// token follows §5 with the default thresholds.
//
// Triggers (each fires at most once per `cooldown` tokens):
//   collapse  — late-window ct: mean of the last `window` values of ct*_t < `threshold` (needs
//               `window` values). ct*_t = min over periods p = 1 … max_period of the §2 ct computed
//               on the states x_{t−2p}, x_{t−p}, x_t: a fixed point (p = 1, the plain §2.6
//               reading, max_period=1) and a cycle of period p (token-level repetition such as
//               tiny-rwkv7's "the the the", where lag-1 ct stays high) both give ct* ≈ 0.
//   spike     — ct_t > median + k · 1.4826 · MAD of the earlier ct values (needs `min_history`).
//   streak    — `n` consecutive COLLAPSE output-state tokens.
// Actions: log (record an event), stop (end the run), guard (insert `guard_text` into the
// context and continue), intervene (apply `intervention` for the next `for_tokens` tokens).
//
// Owns: a Monitor owns its history (ct, states, events); references returned by ct()/states()/events() live
// as long as the Monitor and change with every token. Lifetimes: a Monitor is a GenerationController: it must
// outlive the request that points to it. Throws: std::invalid_argument from the parsers and validate().
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/metrics/output_states.hpp"

namespace phasemap::steer {

enum class TriggerKind { collapse, spike, streak };
enum class ActionKind { log, stop, guard, intervene };
const char* trigger_name(TriggerKind k);
const char* action_name(ActionKind a);

struct TriggerSpec {
    TriggerKind kind = TriggerKind::collapse;
    size_t window = 8;          // collapse: ct values averaged
    double threshold = 0.001;   // collapse: late-window ct* below this
    size_t max_period = 8;      // collapse: longest repetition period considered (1: plain ct)
    double k = 5.0;             // spike: MADs above the median
    size_t min_history = 8;     // spike: earlier ct values needed
    size_t n = 8;               // streak: COLLAPSE tokens in a row
};
// "collapse[:window=W][:threshold=X][:period=P]" | "spike[:k=K][:min=N]" | "streak[:n=N]"; throws
// std::invalid_argument.
TriggerSpec parse_trigger(const std::string& spec);

struct MonitorOptions {
    std::vector<TriggerSpec> triggers;   // empty: collapse, spike and streak with defaults
    ActionKind action = ActionKind::log;
    std::string guard_text = "\n";
    capture::Intervention intervention;  // for ActionKind::intervene (its t range is replaced)
    int for_tokens = 8;                  // intervene: steps t+1 … t+for_tokens
    size_t layer = SIZE_MAX;             // captured layer index (SIZE_MAX: the last)
    size_t cooldown = 16;                // tokens before a trigger may fire again
    size_t max_actions = 1;              // guard / intervene / stop actions per run (log: unlimited)
    metrics::StateThresholds states{};
    void validate() const;               // throws std::invalid_argument
};

struct MonitorEvent {
    int t = 0;
    std::string trigger;
    std::string action;
    double value = 0;                    // the quantity that crossed its threshold
    std::string detail;
};

// One monitor per run (a GenerationController). Needs captured states (ct is NaN otherwise and
// only the streak trigger works).
class Monitor : public capture::GenerationController {
public:
    Monitor(MonitorOptions opt, size_t n_layers_captured, size_t d);
    capture::StepAction after_token(const capture::TokenRecord& rec, std::span<const float> states) override;

    const std::vector<double>& ct() const { return ct_; }        // ct_t for t ≥ 2 (index t − 2)
    const std::vector<double>& ct_star() const { return ct_star_; }  // ct*_t for t ≥ 2 (index t − 2)
    const std::vector<metrics::OutputState>& states() const { return out_states_; }
    const std::vector<MonitorEvent>& events() const { return events_; }
    bool fired() const { return !events_.empty(); }

private:
    MonitorOptions opt_;
    size_t Lp_, d_, layer_;
    size_t max_period_ = 1;
    std::vector<float> hist_;            // last 2·max_period + 1 states of the monitored layer, oldest first
    size_t n_states_ = 0;
    std::vector<double> ct_, ct_star_;
    std::vector<metrics::OutputState> out_states_;
    size_t streak_ = 0;
    std::vector<long> last_fired_;       // per trigger: t of the last firing (−1: never)
    size_t actions_taken_ = 0;
    std::vector<MonitorEvent> events_;
};

}  // namespace phasemap::steer
