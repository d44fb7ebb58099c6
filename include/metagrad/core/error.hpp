// metagrad/core/error.hpp — the exception types metagrad throws. Include <metagrad/core.hpp> instead.
#pragma once

#include <stdexcept>
#include <string>

#include "config.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Base of every exception metagrad throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Run-time shape mismatch: the message names the operation and the shapes involved.
class shape_error : public error {
 public:
  using error::error;
};

/// Out-of-range element access or axis.
class index_error : public error {
 public:
  using error::error;
};

/// Malformed or unreadable file: the message names the path and what was expected.
class io_error : public error {
 public:
  using error::error;
};

/// An Input read before a tensor was bound to it.
class unbound_error : public error {
 public:
  using error::error;
};

/// A request the build cannot serve (e.g. a CUDA device from a file not compiled by nvcc).
class device_error : public error {
 public:
  using error::error;
};

/// A failed CUDA runtime or library call: the message names the call, the error code and its text.
class cuda_error : public error {
 public:
  using error::error;
};

METAGRAD_NAMESPACE_END
