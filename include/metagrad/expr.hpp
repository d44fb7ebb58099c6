// metagrad/expr.hpp — umbrella of the expression layer: elementwise nodes and their front-ends, views,
// reductions, random draws, and the lowered kernel form (plans).
#pragma once

#include "core.hpp"
#include "expr/concat.hpp"
#include "expr/conv.hpp"
#include "expr/conv_bias.hpp"
#include "expr/dropout.hpp"
#include "expr/elementwise.hpp"
#include "expr/functions.hpp"
#include "expr/gather.hpp"
#include "expr/index.hpp"
#include "expr/leaf.hpp"
#include "expr/loss.hpp"
#include "expr/matmul.hpp"
#include "expr/node.hpp"
#include "expr/norm.hpp"
#include "expr/plan.hpp"
#include "expr/pool.hpp"
#include "expr/random.hpp"
#include "expr/reduce.hpp"
#include "expr/softmax.hpp"
#include "expr/view.hpp"
