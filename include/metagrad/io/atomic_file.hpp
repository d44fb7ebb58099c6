// metagrad/io/atomic_file.hpp — AtomicFile, a file written all or nothing: the bytes go to a temporary file
// in the target's directory, which is flushed, fsync'ed and renamed over the target, and the directory is
// fsync'ed so the rename itself survives a crash. Until commit() the target is untouched; a failure or an
// exception before commit removes the temporary. Checkpoints and safetensors files are written this way, so
// a crash or a full disk never leaves a half-written file under the real name. POSIX only (Linux, macOS).
// Include <metagrad/io.hpp> instead.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "../core/config.hpp"
#include "../core/error.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
inline std::string errno_text(int err) { return std::strerror(err); }

// fsync of a directory makes a rename inside it durable (POSIX leaves the directory entry in the page cache
// otherwise). Some file systems refuse to open or sync directories (EINVAL, EBADF): there is nothing more
// the program can do, and the data itself is already synced, so those cases are not errors.
inline void fsync_directory(const std::filesystem::path& dir, const std::string& target) {
  const std::string d = dir.empty() ? std::string(".") : dir.string();
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EBADF && err != ENOTSUP)
    throw io_error("AtomicFile: fsync of directory '" + d + "' after writing '" + target +
                   "' failed: " + errno_text(err));
}
}  // namespace detail

/// A file written atomically: open, write() any number of times, commit(). Readers of `path` see either
/// the old file (or none) or the complete new one, never a partial write.
///
///   AtomicFile f("model.safetensors");
///   f.write(header.data(), header.size());
///   f.write(payload.data(), payload.size());
///   f.commit();                        // without this, the destructor discards everything
///
/// The temporary is `<path>.tmp.XXXXXX` in the same directory (a rename is atomic only within one file
/// system). The new file gets mode 0644 filtered by the umask, like a file created with fopen.
class AtomicFile {
 public:
  /// Creates the temporary file next to `path`.
  /// @throws io_error naming the path and the system's reason when the temporary cannot be created.
  explicit AtomicFile(std::filesystem::path path) : path_(std::move(path)) {
    std::string tmpl = path_.string() + ".tmp.XXXXXX";
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0)
      throw io_error("AtomicFile: cannot create a temporary file for '" + path_.string() + "' (" + tmpl +
                     "): " + detail::errno_text(errno));
    tmp_ = tmpl;
    // mkstemp creates 0600; give the final file the permissions an ordinary fopen would.
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_, 0644 & ~mask);
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Discards the temporary file unless commit() succeeded; never throws.
  ~AtomicFile() { discard(); }

  /// The file that commit() replaces.
  const std::filesystem::path& path() const { return path_; }

  /// Appends `n` bytes. @pre the file is neither committed nor discarded.
  /// @throws io_error naming the path and the system's reason (for example "No space left on device");
  /// the temporary is removed and the target stays as it was.
  void write(const void* data, std::size_t n) {
    check_open("write");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ::ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("writing", errno);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
      written_ += static_cast<std::size_t>(w);
    }
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  /// Bytes written so far.
  std::size_t size() const { return written_; }

  /// Makes the written bytes the content of path(): fsync, rename over the target, fsync the directory.
  /// @throws io_error naming the path on any failure; the target is then untouched (or, if only the
  /// final directory sync failed, already replaced but possibly not yet durable).
  void commit() {
    check_open("commit");
    if (::fsync(fd_) != 0) fail("syncing", errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      const int err = errno;
      remove_tmp();
      throw io_error("AtomicFile: closing the temporary for '" + path_.string() +
                     "' failed: " + detail::errno_text(err));
    }
    if (std::rename(tmp_.c_str(), path_.string().c_str()) != 0) {
      const int err = errno;
      remove_tmp();
      throw io_error("AtomicFile: cannot rename '" + tmp_ + "' to '" + path_.string() +
                     "': " + detail::errno_text(err));
    }
    tmp_.clear();
    committed_ = true;
    detail::fsync_directory(path_.parent_path(), path_.string());
  }

  /// Removes the temporary file without touching the target (what the destructor does). Never throws.
  void discard() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    remove_tmp();
  }

  bool committed() const { return committed_; }

 private:
  void check_open(const char* what) const {
    if (fd_ < 0)
      throw io_error(std::string("AtomicFile::") + what + ": '" + path_.string() +
                     (committed_ ? "' was already committed" : "' was discarded after an error"));
  }
  [[noreturn]] void fail(const char* doing, int err) {
    discard();
    throw io_error("AtomicFile: " + std::string(doing) + " '" + path_.string() +
                   "' failed: " + detail::errno_text(err));
  }
  void remove_tmp() noexcept {
    if (!tmp_.empty()) {
      ::unlink(tmp_.c_str());
      tmp_.clear();
    }
  }

  std::filesystem::path path_;
  std::string tmp_;
  int fd_ = -1;
  std::size_t written_ = 0;
  bool committed_ = false;
};

/// Writes `bytes` to `path` atomically (see AtomicFile). @throws io_error naming the path on failure.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

METAGRAD_NAMESPACE_END
