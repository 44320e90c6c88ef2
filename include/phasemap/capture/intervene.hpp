// Hidden-state interventions applied during generation through the scheduler eval callback
// (see docs/interventions.md for the exact semantics).
//
// An intervention edits the raw output of one block (`block:i`, graph tensor `l_out-i`) in place,
// for the sequences of the requests that declare it, at a range of generated-token indices:
//
//   * step t (0-based generated-token index) edits the state at the emitting position of token t,
//     i.e. the position whose logits choose token t (the last prompt token for t = 0);
//   * `prefill = true` also edits every other prompt position (decoded without capture);
//   * tokens inserted by a guard (StepAction::insert_text) are never edited;
//   * the edited state is what later layers, the output head and — for blocks below the last —
//     the KV cache (or recurrent state) see: later tokens attend to the edited states;
//   * a captured layer equal to the edited tensor (block:i, hf:i+1) is recorded after the edit,
//     so `add v` changes the captured block:i by exactly strength·v.
//
// This header does not expose llama.cpp types.
//
// Owns: an Intervention is a plain value (its vector, its hook's std::function); InterventionState is
// per-sequence scratch owned by the engine. Lifetimes: the span passed to apply_intervention / a hook /
// GenerationController::after_token is valid only during the call. Throws: std::invalid_argument from
// resolve_interventions; a hook's own exception is carried through llama_decode and rethrown by the engine.
#pragma once
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "phasemap/metrics/token_stats.hpp"

namespace phasemap::capture {

enum class InterventionOp {
    add,          // h ← h + strength · v
    scale,        // h ← strength · h
    clamp_norm,   // h ← h · min(1, strength / ‖h‖)            (strength = maximum norm, > 0)
    damp,         // h ← h − α (h − h_prev), α = strength ∈ [0, 1], h_prev = previous token's
                  //   (edited) state at this block in the same sequence
    project_out,  // h ← h − (h·u) u, u = v / ‖v‖; strength ∈ [0, 1] scales the removed part
    noise,        // h ← h + strength · z, z ~ N(0, I) seeded per (seed, sequence, step)
    hook,         // h ← whatever Intervention::hook does to it in place (a caller's function, e.g.
                  //   a Python callable of the phasemap package); strength is not used
};
const char* op_name(InterventionOp op);
bool op_takes_vector(InterventionOp op);

struct Intervention {
    InterventionOp op = InterventionOp::add;
    int block = 0;                // block index i: edits graph tensor l_out-i
    std::vector<float> vec;       // add / project_out: direction of n_embd values
    double strength = 1.0;        // see InterventionOp
    int t_begin = 0;              // generated-token steps [t_begin, t_end)
    int t_end = INT_MAX;
    bool prefill = false;         // also edit the prompt positions before the emitting one
    // Random-direction control: `vec` is replaced by a seeded Gaussian direction of the same L2
    // norm (add, project_out). Resolved by resolve_interventions().
    bool random_direction = false;
    uint64_t seed = 0;            // noise / random-direction seed
    std::string label;            // free text shown in errors and metadata (e.g. the CLI spec)
    // hook: called with the row h (n_embd floats, edited in place), the step t (as for
    // apply_intervention) and the sequence key. It may throw: the engine catches the exception in
    // its eval callback, aborts the graph computation and rethrows it after llama_decode returns
    // (the generation ends with that exception; nothing unwinds through llama.cpp / ggml).
    std::function<void(std::span<float> h, int t, uint64_t seq_key)> hook;

    bool active_at(int t) const { return t >= t_begin && t < t_end; }
    std::string describe() const;  // "add block:3 ×2 @t=0-10"
};

// Checks every intervention against a model (n_layer blocks of width n_embd) and resolves the
// random-direction controls. Throws std::invalid_argument naming the intervention and the
// problem (wrong vector dimension, block out of range, α outside [0, 1], …).
void resolve_interventions(std::vector<Intervention>& ivs, int n_layer, int n_embd);

// A seeded Gaussian direction of n values with L2 norm `norm` (portable: the same numbers on
// every platform for a seed).
std::vector<float> random_direction(size_t n, double norm, uint64_t seed);

// Per-sequence state of an intervention (damp keeps the previous state here).
struct InterventionState {
    std::vector<float> prev;   // damp: h_prev (empty until the first state was seen)
};

// Applies `iv` to one row h of n_embd floats at generated-token step t ≥ 0, or at a prompt
// position p when t = −1 − p (prefill), of sequence `seq_key` (seeds noise with t). The caller
// decides whether the row is edited; only damp looks at the range itself: it is called on every
// row from step t_begin − 1 on to record h_prev (in `st`), and edits only where active.
void apply_intervention(const Intervention& iv, std::span<float> h, int t, uint64_t seq_key, InterventionState* st);

// Parsing of the CLI grammar and of intervention files: include/phasemap/steer/spec.hpp.

// ------------------------------------------------------------------ online control hooks

// What a controller asks for after a generated token.
struct StepAction {
    bool stop = false;                          // end the run now (stop reason `stop_reason`)
    std::string stop_reason = "monitor";
    std::string insert_text;                    // decoded into this sequence's context, then go on
    std::vector<Intervention> add_interventions;  // added to the run (their t ranges are absolute)
    std::vector<std::string> events;            // log lines (the engine passes them on to RunEnd)
};

struct TokenRecord;  // capture.hpp

// Observes a run token by token and may act on it (the online monitor and guard). `states` is
// the token's captured [L', d] states (after any edit); valid only during the call.
class GenerationController {
public:
    virtual ~GenerationController() = default;
    virtual StepAction after_token(const TokenRecord& rec, std::span<const float> states) = 0;
};

// Guard text inserted into a run's context (not generated): after generated token `after_t`.
struct Insertion {
    int after_t = -1;          // index of the generated token it follows
    int position = 0;          // context position of its first token
    std::vector<int32_t> ids;
    std::string text;
    size_t text_offset = 0;    // byte offset in RunEnd::text (generated text) where it goes
};

}  // namespace phasemap::capture
