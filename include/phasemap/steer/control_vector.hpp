// The control-vector type for steer's users: capture::ControlVector and its GGUF I/O
// (include/phasemap/capture/control_vector.hpp, where the engine that applies it and the gguf API
// live), under the steer names the builders and the verbs use.
//
// Lifetimes and errors: those of capture/control_vector.hpp.
#pragma once
#include "phasemap/capture/control_vector.hpp"

namespace phasemap::steer {

using capture::ControlVector;
using capture::check_control_vector;
using capture::read_control_vector;
using capture::write_control_vector;

}  // namespace phasemap::steer
