// metagrad/autodiff.hpp — umbrella of the autodiff layer: grad(), stop_gradient() and the nodes gradients
// are made of.
#pragma once

#include "autodiff/grad.hpp"
#include "autodiff/nodes.hpp"
#include "expr.hpp"
