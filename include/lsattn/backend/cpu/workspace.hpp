#pragma once
// Scratch memory for CPU calls that is kept from one call to the next. Fresh buffers of a few
// MiB per call cost page faults and zeroing on every call (a third of a small LRA layer's time);
// a workspace pays them once. Not thread-safe: one workspace per concurrent caller.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "lsattn/core/error.hpp"
#include "lsattn/core/limits.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

class CpuWorkspace {
 public:
  CpuWorkspace() = default;
  // Scratch is not state: a copy starts empty (so that objects holding a workspace, such as a
  // language model's stream state, stay copyable), and a move takes the buffers along.
  CpuWorkspace(const CpuWorkspace&) {}
  CpuWorkspace& operator=(const CpuWorkspace& other) {
    if (this != &other) clear();
    return *this;
  }
  CpuWorkspace(CpuWorkspace&&) noexcept = default;
  CpuWorkspace& operator=(CpuWorkspace&&) noexcept = default;

  // The buffers taken while a Frame lives are given back (kept for reuse) when it ends: frames
  // nest like the calls that open them, and a call that repeats the previous one's requests gets
  // the same memory back, without page faults.
  class Frame {
   public:
    explicit Frame(CpuWorkspace& workspace) : workspace_(workspace), first_(workspace.next_) {}
    ~Frame() { workspace_.next_ = first_; }
    Frame(const Frame&) = delete;
    Frame& operator=(const Frame&) = delete;

   private:
    CpuWorkspace& workspace_;
    std::size_t first_;
  };

  // `count` uninitialised elements, 64-byte aligned, valid until the enclosing Frame ends. The
  // caller writes every element before reading it.
  template <class T>
  T* take(index_t count) {
    const index_t bytes = checked_product({{"workspace elements", count}, {"element bytes", static_cast<index_t>(sizeof(T))}});
    if (next_ == slots_.size()) slots_.emplace_back();
    Slot& slot = slots_[next_++];
    if (slot.memory == nullptr || slot.bytes < bytes) {  // never null, even for 0 elements
      const index_t size = bytes > 64 ? bytes : 64;
      slot.memory.reset(static_cast<std::byte*>(::operator new(static_cast<std::size_t>(size), std::align_val_t{64})));
      slot.bytes = size;
    }
    return reinterpret_cast<T*>(slot.memory.get());
  }

  // Bytes held now, over all buffers.
  std::size_t bytes() const {
    std::size_t total = 0;
    for (const Slot& slot : slots_) total += static_cast<std::size_t>(slot.bytes);
    return total;
  }

  // Gives every buffer back to the system.
  void clear() {
    slots_.clear();
    next_ = 0;
  }

 private:
  struct AlignedDelete {
    void operator()(std::byte* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  struct Slot {
    std::unique_ptr<std::byte, AlignedDelete> memory;
    index_t bytes = 0;
  };
  std::vector<Slot> slots_;
  std::size_t next_ = 0;
};

// The scratch of one executor call: the caller's workspace when given, else one of its own
// (fresh memory, as before workspaces existed); either way inside a Frame, so everything taken
// during the call is handed back when it ends.
class CallScratch {
 public:
  explicit CallScratch(CpuWorkspace* given) : workspace_(given != nullptr ? *given : own_), frame_(workspace_) {}
  CallScratch(const CallScratch&) = delete;
  CallScratch& operator=(const CallScratch&) = delete;

  CpuWorkspace& workspace() { return workspace_; }

 private:
  CpuWorkspace own_;  // declared first: constructed before workspace_ may refer to it
  CpuWorkspace& workspace_;
  CpuWorkspace::Frame frame_;
};

}  // namespace lsattn
