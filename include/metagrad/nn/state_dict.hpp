// metagrad/nn/state_dict.hpp — a model's named state (parameters and buffers) to and from safetensors files
// with PyTorch-style keys, and checkpoints (model + optimiser state + metadata) written atomically and
// validated on load. load_state_dict matches by name: strict mode refuses a file with missing, unexpected
// or mis-shaped keys (and changes nothing); non-strict mode loads what matches and reports the rest, which
// is how pretrained weights are loaded into a model with a new head. Include <metagrad/nn.hpp> instead.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/safetensors.hpp"
#include "module.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// What load_state_dict did: keys loaded, keys of the model absent from the file, keys of the file the model
/// does not have, and keys present in both with different shapes (not loaded).
struct LoadReport {
  struct Mismatch {
    std::string name;
    std::vector<index_t> model_shape, file_shape;
  };
  std::vector<std::string> loaded, missing, unexpected;
  std::vector<Mismatch> mismatched;

  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  /// A readable summary: "missing keys: ...; unexpected keys: ...; shape mismatches: fc.weight model [10, 84]
  /// file [5, 84]".
  std::string str() const {
    auto list = [](const std::vector<std::string>& v) {
      std::string r;
      for (std::size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + v[i];
      return r;
    };
    std::string r = std::to_string(loaded.size()) + " loaded";
    if (!missing.empty()) r += "; missing keys: " + list(missing);
    if (!unexpected.empty()) r += "; unexpected keys: " + list(unexpected);
    if (!mismatched.empty()) {
      r += "; shape mismatches:";
      for (const auto& m : mismatched)
        r += " " + m.name + " model " + ::metagrad::detail::shape_string(m.model_shape) + " file " +
             ::metagrad::detail::shape_string(m.file_shape);
    }
    return r;
  }
};

namespace detail {

template <class F>
decltype(auto) visit_dtype(DType d, F&& f) {
  switch (d) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::i32:
      return f(std::int32_t{});
    case DType::i64:
      return f(std::int64_t{});
    case DType::b8:
      return f(bool{});
    case DType::u8:
      return f(std::uint8_t{});
  }
  throw error("unknown dtype");
}

template <class T, int R>
AnyTensor any_tensor_ranked(const StateEntry& e) {
  Shape<R> s;
  for (int d = 0; d < R; ++d) s[d] = e.shape[d];
  const auto t = Tensor<T, R>::from_blob(static_cast<T*>(e.data), s, e.device);
  return AnyTensor(e.device.is_cpu() ? t : t.to(Device::cpu()));
}

// The entry's memory as an AnyTensor for the safetensors writer: no copy on the host, a host copy of a device
// entry (made before the file is opened, so a failing copy leaves no file behind).
inline AnyTensor any_tensor(const StateEntry& e) {
  return visit_dtype(e.dtype, [&](auto tag) -> AnyTensor {
    using T = decltype(tag);
    switch (e.shape.size()) {
      case 0:
        return any_tensor_ranked<T, 0>(e);
      case 1:
        return any_tensor_ranked<T, 1>(e);
      case 2:
        return any_tensor_ranked<T, 2>(e);
      case 3:
        return any_tensor_ranked<T, 3>(e);
      case 4:
        return any_tensor_ranked<T, 4>(e);
      case 5:
        return any_tensor_ranked<T, 5>(e);
      case 6:
        return any_tensor_ranked<T, 6>(e);
      default:
        throw error("state dict: tensor '" + e.name + "' has rank " + std::to_string(e.shape.size()) +
                    "; at most 6 is supported");
    }
  });
}

// Copies `src` (little-endian bytes of dtype sd) into the entry's memory, converting the dtype; an entry on a
// device is filled through a host buffer.
inline void copy_converted(const StateEntry& dst, const TensorBytes& src) {
  const auto n = static_cast<std::size_t>(dst.numel());
  const std::size_t bytes = n * dtype_size(dst.dtype);
  std::vector<unsigned char> staging(dst.device.is_cpu() ? 0 : bytes);
  void* out = dst.device.is_cpu() ? dst.data : static_cast<void*>(staging.data());
  if (src.dtype == dst.dtype) {
    std::memcpy(out, src.bytes.data(), bytes);  // safetensors is little-endian, as is x86
  } else {
    visit_dtype(dst.dtype, [&](auto dtag) {
      using D = decltype(dtag);
      visit_dtype(src.dtype, [&](auto stag) {
        using S = decltype(stag);
        auto* o = static_cast<D*>(out);
        for (std::size_t i = 0; i < n; ++i) {
          S v;
          std::memcpy(&v, src.bytes.data() + i * sizeof(S), sizeof(S));
          o[i] = static_cast<D>(v);
        }
      });
    });
  }
  if (!dst.device.is_cpu()) ::metagrad::detail::copy_bytes(dst.data, dst.device, out, Device::cpu(), bytes);
}

inline LoadReport match_state(const std::vector<StateEntry>& state, const SafeTensors& file,
                              const std::string& prefix) {
  LoadReport r;
  std::map<std::string, bool> seen;
  for (const auto& name : file.names())
    if (name.compare(0, prefix.size(), prefix) == 0) seen[name.substr(prefix.size())] = false;
  for (const auto& e : state) {
    auto it = seen.find(e.name);
    if (it == seen.end()) {
      r.missing.push_back(e.name);
      continue;
    }
    it->second = true;
    const auto& fs = file.shape(prefix + e.name);
    if (fs != e.shape)
      r.mismatched.push_back({e.name, e.shape, fs});
    else
      r.loaded.push_back(e.name);
  }
  for (const auto& [name, used] : seen)
    if (!used) r.unexpected.push_back(name);
  return r;
}

inline void load_matched(const std::vector<StateEntry>& state, const SafeTensors& file, const std::string& prefix,
                         const LoadReport& r) {
  std::map<std::string, const StateEntry*> by_name;
  for (const auto& e : state) by_name[e.name] = &e;
  for (const auto& name : r.loaded) copy_converted(*by_name[name], file.raw(prefix + name));
}

}  // namespace detail

/// The model's state as safetensors entries named prefix + key (no copy: they read the model's memory).
inline SafeTensorsEntries state_entries(const std::vector<StateEntry>& state, const std::string& prefix = "") {
  SafeTensorsEntries out;
  out.reserve(state.size());
  for (const auto& e : state) out.emplace_back(prefix + e.name, detail::any_tensor(e));
  return out;
}

/// Writes the model's parameters and buffers to `path` (safetensors, atomically), keyed like PyTorch's
/// state_dict: torch's safetensors.torch.load_file(path) gives a dict model.load_state_dict accepts. A model
/// on a GPU is copied to the host first (the file is the same as the CPU model's).
template <class Model>
void save_state_dict(const Model& model, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata = {}) {
  write_safetensors(path, state_entries(state_of(model)), metadata);
}

struct LoadOptions {
  /// Refuse (throw, changing nothing) unless the file and the model have exactly the same keys and shapes.
  bool strict = true;
  /// Only file keys starting with this prefix are considered, with the prefix removed ("model.").
  std::string prefix;
};

/// Loads the tensors of `file` into the model by name, converting dtypes (float64 weights into a float32
/// model, as torch does), wherever the model's tensors live (a model on a GPU is written through the host). @throws
/// io_error in strict mode when the keys or shapes differ (naming them all); io_error when the file is malformed.
/// `label` names the file in messages.
template <class Model>
LoadReport load_state_dict(Model& model, const SafeTensors& file, const LoadOptions& o = {},
                           const std::string& label = "the state dict") {
  const auto state = state_of(model);
  LoadReport r = detail::match_state(state, file, o.prefix);
  if (o.strict && !r.complete())
    throw io_error("load_state_dict: " + label + " does not match the model (strict): " + r.str());
  detail::load_matched(state, file, o.prefix, r);
  return r;
}
template <class Model>
LoadReport load_state_dict(Model& model, const std::filesystem::path& path, const LoadOptions& o = {}) {
  return load_state_dict(model, SafeTensors(path), o, "'" + path.string() + "'");
}

/// Writes a checkpoint: the model's state under "model.", the optimiser's under "optim." and string
/// metadata (epoch, metrics, ...) in one safetensors file, atomically (a crash leaves the previous file).
template <class Model, class Opt>
void save_checkpoint(const std::filesystem::path& path, const Model& model, Opt& opt,
                     std::map<std::string, std::string> metadata = {}) {
  auto entries = state_entries(state_of(model), "model.");
  std::vector<StateEntry> ostate;
  opt.collect_state(ostate);
  for (auto& e : state_entries(ostate, "optim.")) entries.push_back(std::move(e));
  metadata["format"] = "metagrad.checkpoint.v1";
  write_safetensors(path, entries, metadata);
}

/// Restores a checkpoint written by save_checkpoint into `model` and `opt`, after validating that every key
/// is present with the right shape (nothing is changed otherwise). @return the checkpoint's metadata.
/// @throws io_error naming the file and every missing, unexpected or mis-shaped key.
template <class Model, class Opt>
std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& path, Model& model, Opt& opt) {
  const SafeTensors file(path);
  const auto it = file.metadata().find("format");
  if (it == file.metadata().end() || it->second != "metagrad.checkpoint.v1")
    throw io_error("load_checkpoint: " + path.string() + " is not a metagrad checkpoint (metadata 'format' is " +
                   (it == file.metadata().end() ? std::string("absent") : "'" + it->second + "'") + ")");
  const auto mstate = state_of(model);
  std::vector<StateEntry> ostate;
  opt.collect_state(ostate);
  LoadReport rm = detail::match_state(mstate, file, "model.");
  LoadReport ro = detail::match_state(ostate, file, "optim.");
  // Keys of one part are "unexpected" to the other; only keys under neither prefix are truly unexpected.
  std::vector<std::string> stray;
  for (const auto& n : file.names())
    if (n.rfind("model.", 0) != 0 && n.rfind("optim.", 0) != 0) stray.push_back(n);
  if (!rm.complete() || !ro.complete() || !stray.empty()) {
    std::string why = "model: " + rm.str() + "; optimiser: " + ro.str();
    for (const auto& s : stray) why += "; stray key " + s;
    throw io_error("load_checkpoint: " + path.string() + " does not match this model and optimiser: " + why);
  }
  detail::load_matched(mstate, file, "model.", rm);
  detail::load_matched(ostate, file, "optim.", ro);
  opt.state_loaded();
  return file.metadata();
}

}  // namespace nn
METAGRAD_NAMESPACE_END
