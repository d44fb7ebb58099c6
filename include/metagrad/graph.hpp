// metagrad/graph.hpp — umbrella of the graph layer: compile(outputs...) and Program (boundary collection,
// type-identity deduplication, ordering, liveness and buffer slots at compile time; allocation-free runs).
#pragma once

#include "autodiff.hpp"
#include "graph/plan.hpp"
#include "graph/program.hpp"
