// metagrad/nn.hpp — umbrella of the nn layer: layers with named parameters, sequential models,
// initialisers, optimisers, learning-rate schedules, state dicts and the training loop.
#pragma once

#include "autodiff.hpp"
#include "backend/cpu.hpp"
#include "core.hpp"
#include "expr.hpp"
#include "graph.hpp"
#include "io.hpp"
#include "nn/conv.hpp"
#include "nn/init.hpp"
#include "nn/layer_base.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"
#include "nn/norm.hpp"
#include "nn/optim.hpp"
#include "nn/schedule.hpp"
#include "nn/sequential.hpp"
#include "nn/state_dict.hpp"
#include "nn/train_step.hpp"
#include "nn/trainer.hpp"
