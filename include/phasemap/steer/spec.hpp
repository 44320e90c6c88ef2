// Intervention declarations from the command line and from TOML files (docs/interventions.md).
//
//   SPEC    := OP ':' LAYER (':' ARG)* ('@' QUAL (',' QUAL)*)?
//   OP      := add | scale | clamp | damp | project-out | noise | random-add | random-project-out
//   LAYER   := 'block:' N        N ≥ 0, or negative counting from the end (block:-1 = last block)
//   add:block:3:VEC[:STRENGTH]             h += STRENGTH·v            (STRENGTH default 1)
//   project-out:block:3:VEC[:STRENGTH]     h −= STRENGTH·(h·u)u       (STRENGTH ∈ [0,1], default 1)
//   scale:block:3:FACTOR                   h *= FACTOR
//   clamp:block:3:MAXNORM                  ‖h‖ ≤ MAXNORM
//   damp:block:3:ALPHA                     h −= ALPHA·(h − h_prev)    (ALPHA ∈ [0,1])
//   noise:block:3:SIGMA                    h += SIGMA·z, z ~ N(0, I)
//   VEC     := a vector file: .npy (1-d float), .txt (whitespace-separated numbers) or a
//              control-vector .gguf (its direction.N for the block)
//   QUAL    := t=A-B | t=A- | t=A | prefill | seed=N | prompts=I+J+…
//              (generated-token steps, inclusive; also edit prompt positions; noise/random seed;
//              which prompts of the invocation carry it — default: all)
// The random- variants are the equal-norm random-direction controls of add / project-out.
//
// Owns: parsed interventions are plain values (vector files are read during the call). Throws:
// std::invalid_argument naming the spec or file.
#pragma once
#include <string>
#include <vector>

#include "phasemap/capture/intervene.hpp"

namespace phasemap::steer {

struct ParsedIntervention {
    capture::Intervention iv;
    std::vector<int> prompts;  // prompt indices that carry it (empty: all)
};

// FILE[:SCALE] of --control-vector and --lora: the text after the last ':' is the scale (a float
// in opt::kScale; default 1 when the spec has no ':'). Strict: an empty file part, an empty scale
// ("cv.gguf:"), a scale that is not a whole number literal ("1.5x", "abc"), out of float range
// ("1e999"), not finite ("nan", "inf") or outside kScale is std::invalid_argument naming `option`
// and the spec. A file name that holds ':' itself needs an explicit scale ("a:b.gguf:1").
struct FileScale {
    std::string path;
    float scale = 1.0f;
};
FileScale parse_file_scale(const std::string& spec, const std::string& option);

// Throws std::invalid_argument naming the spec and the problem.
ParsedIntervention parse_intervention_spec(const std::string& spec, int n_layer);
// TOML: [[intervention]] tables with keys op, layer ("block:N"), vector (path, relative to the
// file), strength, t ("A-B" | "A-" | "A"), prefill (bool), seed (int), random (bool),
// prompts (array of ints).
std::vector<ParsedIntervention> parse_intervention_file(const std::string& path, int n_layer);
// A direction from a vector file (.npy, .txt, or control-vector .gguf → direction.<block>).
std::vector<float> read_vector_file(const std::string& path, int block);

}  // namespace phasemap::steer
