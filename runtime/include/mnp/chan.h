// mnp/chan.h — Go's channels and select (DESIGN.md §6).
//
//   mnp::Chan<int> ch;           // unbuffered: a send waits for a receiver
//   mnp::Chan<std::string> q(8); // buffered: up to 8 values wait in the channel
//
//   mnp::go([ch]() mutable { ch.send(42); ch.close(); });
//   auto [v, ok] = ch.recv();    // v == 42, ok == true
//   auto [w, ok2] = ch.recv();   // closed and drained: w == int{}, ok2 == false
//   for (int x : q) { ... }      // Go's `for x := range q`: until closed and drained
//
//   switch (mnp::select(mnp::on_recv(a, [&](int v, bool ok) { ... }),
//                       mnp::on_send(b, 7),
//                       mnp::on_recv(mnp::after(100ms)),
//                       mnp::on_default())) {
//     case 0: ... // received from a (the handler ran first)
//     case 1: ... // sent 7 on b
//     case 2: ... // timed out
//     case 3: ... // nothing was ready (the default case)
//   }
//
// Semantics are Go's:
//   - A Chan is a handle: copies refer to the same channel (Go's `chan T` is a
//     reference too); the channel lives until the last handle goes. A
//     moved-from (or Chan<T>::nil()) handle is a nil channel: a send or
//     receive on it blocks forever, and a select case on it never fires.
//   - Values move: send moves its argument into the receiver's storage (an
//     unbuffered hand-off goes straight from the sender's frame into the
//     receiver's, without passing through the channel), receive moves it out.
//     T needs a move constructor only; recv() also wants T to be
//     default-constructible (the value a closed channel gives), recv_opt()
//     and select handlers taking std::optional<T> do not.
//   - Closing: receivers get the buffered values, then "closed" (ok=false).
//     Closing wakes every waiting receiver (ok=false) and every waiting
//     sender (which gets the error below).
//   - Errors the program sees, where Go panics: send on a closed channel
//     returns Error(Errc::chan_closed, "send"); a second close returns
//     Error(Errc::chan_closed, "close"); try_send reports ChanStatus::closed.
//     A select send case on a closed channel hands Error(chan_closed) to its
//     handler if the handler takes an Error, else the program stops with
//     "mnp: fatal error: select: send on closed channel" (Go's panic) —
//     never undefined behaviour.
//   - A blocked G shows as "chan send", "chan receive" or "select" in the G
//     dump. T's move constructor runs under the channel's lock: it must not
//     block or use channels.
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "mnp/error.h"
#include "mnp/runtime.h"

namespace mnp {

namespace rt {
struct G;
}

// What a non-blocking channel operation did.
enum class ChanStatus : uint8_t {
  ok,           // sent / received
  would_block,  // no partner and no room (send) or nothing buffered (receive)
  closed,       // the channel is closed (and, for a receive, drained)
};

namespace detail {

// The type-erased channel (Go's hchan), defined in runtime/sync/chan.cpp.
struct ChanCore;

// How the core moves and destroys a T it knows only by address.
struct ElemOps {
  size_t size;
  size_t align;
  void (*move_to)(void* dst, void* src);  // ::new (dst) T(std::move(*src))
  void (*destroy)(void* p);
};

template <class T>
struct ElemOpsFor {
  static void move_to(void* dst, void* src) { ::new (dst) T(std::move(*static_cast<T*>(src))); }
  static void destroy(void* p) { static_cast<T*>(p)->~T(); }
  static constexpr ElemOps ops{sizeof(T), alignof(T), move_to, destroy};
};

// A G waiting on a channel (Go's sudog). It lives in the waiting G's own
// frame, which stays put while the G is parked. Its fields belong to the
// channel's lock while it is queued; `elem` points into the waiting G's frame
// (the value to send, or the storage to receive into) and the partner moves
// the value through it directly.
struct Sudog {
  rt::G* g = nullptr;
  Sudog* next = nullptr;  // in the channel's sendq or recvq
  Sudog* prev = nullptr;
  ChanCore* c = nullptr;
  void* elem = nullptr;
  // For a select, shared by all its cases: the first partner to flip it from
  // 0 to 1 wins the G; the others skip this sudog (Go's g.selectDone).
  std::atomic<uint32_t>* select_done = nullptr;
  bool success = false;  // woken by a communication (true) or by close (false)
};

// One case of a select, filled by mnp::select from its arguments.
struct SelectCase {
  ChanCore* c = nullptr;  // nullptr: a nil channel (the case never fires)
  void* elem = nullptr;   // send: the value; receive: uninitialised storage
  bool send = false;
  Sudog sg;
};

ChanCore* chan_make(const ElemOps* ops, size_t cap);
void chan_ref(ChanCore* c) noexcept;
void chan_unref(ChanCore* c) noexcept;
// src is moved from only on ChanStatus::ok; dst is constructed only then.
ChanStatus chan_send(ChanCore* c, void* src, bool block);
ChanStatus chan_recv(ChanCore* c, void* dst, bool block);
bool chan_close(ChanCore* c);  // false: it was closed already
size_t chan_len(const ChanCore* c) noexcept;
size_t chan_cap(const ChanCore* c) noexcept;
// Go's selectgo over cases[0, n); order has room for 2n indices. Returns the
// index of the case that fired, or -1 if none was ready and !block. *ok:
// for a receive, a value was stored (false: closed); for a send, the value
// was sent (false: closed).
int selectgo(SelectCase* cases, uint16_t* order, int n, bool block, bool* ok);
[[noreturn]] void chan_fatal(const char* msg);

struct NoHandler {};

}  // namespace detail

// The result of a blocking receive: Go's `v, ok := <-ch`.
template <class T>
struct Received {
  T value;
  bool ok;  // false: the channel is closed and drained (value is T{})
};

// The result of a non-blocking receive.
template <class T>
struct TryReceived {
  std::optional<T> value;  // set iff status == ChanStatus::ok
  ChanStatus status;
};

template <class T>
class Chan {
  static_assert(std::is_move_constructible_v<T>, "Chan<T> needs a movable T");
  static_assert(!std::is_reference_v<T> && !std::is_const_v<T>,
                "Chan<T> wants a plain object type");

 public:
  // make(chan T, cap): a new channel, unbuffered when cap is 0.
  explicit Chan(size_t cap = 0) : c_(detail::chan_make(&detail::ElemOpsFor<T>::ops, cap)) {}
  // A nil channel (Go's `var ch chan T`): blocks forever, never fires in select.
  static Chan nil() noexcept { return Chan(nullptr); }

  Chan(const Chan& o) noexcept : c_(o.c_) {
    if (c_) detail::chan_ref(c_);
  }
  Chan(Chan&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Chan& operator=(Chan o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~Chan() {
    if (c_) detail::chan_unref(c_);
  }

  // Blocks until a receiver takes v (unbuffered) or there is room (buffered).
  // Errc::chan_closed if the channel is, or gets, closed before that.
  Error send(T v) {
    if (detail::chan_send(c_, &v, true) == ChanStatus::closed)
      return Error(Errc::chan_closed, "send");
    return {};
  }
  // Sends only if that needs no waiting; v is moved from only on ChanStatus::ok.
  ChanStatus try_send(T&& v) { return detail::chan_send(c_, &v, false); }
  ChanStatus try_send(const T& v) {
    T copy(v);
    return try_send(std::move(copy));
  }

  // Blocks until a value arrives or the channel is closed and drained.
  Received<T> recv() requires std::default_initializable<T> {
    Slot s;
    if (detail::chan_recv(c_, s.buf, true) == ChanStatus::ok) return {s.take(), true};
    return {T{}, false};
  }
  // The same, for any T: std::nullopt when closed and drained.
  std::optional<T> recv_opt() {
    Slot s;
    if (detail::chan_recv(c_, s.buf, true) == ChanStatus::ok) return s.take();
    return std::nullopt;
  }
  TryReceived<T> try_recv() {
    Slot s;
    ChanStatus st = detail::chan_recv(c_, s.buf, false);
    if (st == ChanStatus::ok) return {s.take(), st};
    return {std::nullopt, st};
  }

  // Closes the channel: waiting receivers get ok=false, waiting senders
  // Errc::chan_closed. Errc::chan_closed if it was closed already.
  Error close() {
    if (!c_) return Error(Errc::chan_closed, "close of nil channel");
    if (!detail::chan_close(c_)) return Error(Errc::chan_closed, "close");
    return {};
  }

  size_t len() const noexcept { return c_ ? detail::chan_len(c_) : 0; }  // values buffered now
  size_t cap() const noexcept { return c_ ? detail::chan_cap(c_) : 0; }
  bool is_nil() const noexcept { return c_ == nullptr; }
  friend bool operator==(const Chan& a, const Chan& b) noexcept { return a.c_ == b.c_; }

  // `for (T v : ch)`: receives until the channel is closed and drained.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Chan* ch) : ch_(ch) { ++*this; }
    T& operator*() { return *v_; }
    iterator& operator++() {
      v_ = ch_->recv_opt();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.v_; }

   private:
    Chan* ch_ = nullptr;
    std::optional<T> v_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

  // The type-erased channel, for select (not for programs).
  detail::ChanCore* core() const noexcept { return c_; }

 private:
  explicit Chan(detail::ChanCore* c) noexcept : c_(c) {}

  // Storage a receive constructs into (T need not be default-constructible).
  struct Slot {
    alignas(T) unsigned char buf[sizeof(T)];
    T take() {
      T* p = std::launder(reinterpret_cast<T*>(buf));
      T v(std::move(*p));
      p->~T();
      return v;
    }
  };

  detail::ChanCore* c_;
};

// A channel that receives the time once, d from now (Go's time.After). Like
// Go's (before 1.23), its timer is not reclaimed before it fires.
Chan<Deadline> after(Duration d);
template <class Rep, class Period>
Chan<Deadline> after(std::chrono::duration<Rep, Period> d) {
  return after(std::chrono::duration_cast<Duration>(d));
}

// ---------------------------------------------------------------------------
// select

namespace detail {

template <class T, class F>
struct RecvCase {
  static constexpr int kind = 1;
  ChanCore* c;
  F f;
  alignas(T) unsigned char buf[sizeof(T)];  // left uninitialised: a receive constructs here

  template <class G>
  RecvCase(ChanCore* ch, G&& g) : c(ch), f(std::forward<G>(g)) {}

  void fill(SelectCase& sc) {
    sc.c = c;
    sc.elem = buf;
    sc.send = false;
  }
  // Runs the handler with what arrived; `got` says a value is in buf.
  void fire(bool got) {
    T* p = got ? std::launder(reinterpret_cast<T*>(buf)) : nullptr;
    struct Drop {
      T* p;
      ~Drop() {
        if (p) p->~T();
      }
    } drop{p};
    if constexpr (std::is_same_v<F, NoHandler>) {
    } else if constexpr (std::is_invocable_v<F&, T&&, bool>) {
      if (p)
        f(std::move(*p), true);
      else
        f(T{}, false);
    } else if constexpr (std::is_invocable_v<F&, std::optional<T>>) {
      if (p)
        f(std::optional<T>(std::move(*p)));
      else
        f(std::optional<T>());
    } else {
      static_assert(std::is_invocable_v<F&>,
                    "on_recv handler: f(T, bool ok), f(std::optional<T>) or f()");
      f();
    }
  }
};

template <class T, class F>
struct SendCase {
  static constexpr int kind = 2;
  ChanCore* c;
  T value;
  F f;

  void fill(SelectCase& sc) {
    sc.c = c;
    sc.elem = &value;
    sc.send = true;
  }
  void fire(bool sent) {
    if constexpr (std::is_invocable_v<F&, Error>) {
      f(sent ? Error() : Error(Errc::chan_closed, "send"));
    } else {
      if (!sent) chan_fatal("select: send on closed channel");
      if constexpr (!std::is_same_v<F, NoHandler>) {
        static_assert(std::is_invocable_v<F&>, "on_send handler: f() or f(mnp::Error)");
        f();
      }
    }
  }
};

template <class F>
struct DefaultCase {
  static constexpr int kind = 0;
  F f;
  void fill(SelectCase&) {}
  void fire(bool) {
    if constexpr (!std::is_same_v<F, NoHandler>) f();
  }
};

}  // namespace detail

// A receive case. The handler, if any, runs after the select has chosen this
// case: f(T v, bool ok) (v is T{} when closed), f(std::optional<T>), or f().
template <class T, class F = detail::NoHandler>
detail::RecvCase<T, std::decay_t<F>> on_recv(const Chan<T>& ch, F&& f = {}) {
  return {ch.core(), std::forward<F>(f)};
}

// A send case: v is sent only if this case is chosen (else it is dropped).
// The handler runs after the send: f(), or f(mnp::Error) to also hear about a
// closed channel (without one, that is fatal, as Go's panic).
template <class T, class U, class F = detail::NoHandler>
detail::SendCase<T, std::decay_t<F>> on_send(const Chan<T>& ch, U&& v, F&& f = {}) {
  return {ch.core(), T(std::forward<U>(v)), std::forward<F>(f)};
}

// The default case: chosen when no other case is ready; select never blocks.
template <class F = detail::NoHandler>
detail::DefaultCase<std::decay_t<F>> on_default(F&& f = {}) {
  return {std::forward<F>(f)};
}

// Waits until one of the cases can proceed, does it, runs its handler and
// returns its position among the arguments. When several are ready, one is
// chosen at random (no case starves). With no ready case: the default case
// if there is one, else the G parks (once, on every case's channel) until a
// partner or a close picks one. select() with no cases blocks forever.
template <class... Cases>
int select(Cases&&... cases) {
  constexpr int ndefault = (0 + ... + (std::remove_cvref_t<Cases>::kind == 0 ? 1 : 0));
  static_assert(ndefault <= 1, "select: at most one default case");
  constexpr int n = static_cast<int>(sizeof...(Cases)) - ndefault;
  static_assert(n < 65536, "select: too many cases");
  detail::SelectCase sc[n > 0 ? n : 1];
  uint16_t order[n > 0 ? 2 * n : 1];
  int argpos[n > 0 ? n : 1];
  int default_pos = -1;
  int k = 0, pos = 0;
  (
      [&](auto& c) {
        if constexpr (std::remove_cvref_t<decltype(c)>::kind == 0) {
          default_pos = pos;
        } else {
          c.fill(sc[k]);
          argpos[k++] = pos;
        }
        pos++;
      }(cases),
      ...);
  bool ok = false;
  int fired = detail::selectgo(sc, order, n, ndefault == 0, &ok);
  int chosen = fired < 0 ? default_pos : argpos[fired];
  pos = 0;
  (
      [&](auto& c) {
        if (pos++ == chosen) c.fire(ok);
      }(cases),
      ...);
  return chosen;
}

}  // namespace mnp
