// metagrad/expr.hpp — umbrella of the expression layer: elementwise nodes and their front-ends, views,
// reductions, random draws, and the lowered kernel form (plans).
#pragma once

#include "core.hpp"
#include "expr/elementwise.hpp"
#include "expr/functions.hpp"
#include "expr/leaf.hpp"
#include "expr/matmul.hpp"
#include "expr/node.hpp"
#include "expr/plan.hpp"
#include "expr/random.hpp"
#include "expr/reduce.hpp"
#include "expr/view.hpp"
