# scripts/mnp-gdb.py — look at mini-netpoll's goroutines from gdb.
#
#   gdb -p PID  (or gdb ./prog core)
#   (gdb) source scripts/mnp-gdb.py
#   (gdb) mnp-goroutines            # every G: id, status, wait reason, fd
#   (gdb) mnp-goroutine 7 bt        # run `bt` on G 7's own stack
#
# A parked G's registers are on its own stack, in the frame mnp_ctx_jump
# pushed (runtime/context/frame.h): mnp-goroutine points the current
# thread's sp/fp/pc at that frame, runs the command, and puts them back.
import gdb

STATUS = ["idle", "runnable", "running", "waiting", "syscall", "dead"]
# x86-64 frame (frame.h): rbp at +48, return address at +56, frame size 64.
X64 = {"fp": 48, "pc": 56, "size": 64, "regs": ("$rsp", "$rbp", "$pc")}
# AArch64 frame: x29 at +80, x30 at +88, frame size 176.
A64 = {"fp": 80, "pc": 88, "size": 176, "regs": ("$sp", "$x29", "$pc")}


def arch():
    name = gdb.selected_frame().architecture().name()
    return A64 if "aarch64" in name else X64


def all_gs():
    sym = gdb.lookup_global_symbol("mnp::rt::sched") or gdb.lookup_symbol("mnp::rt::sched")[0]
    if sym is None:
        raise gdb.GdbError("mnp::rt::sched not found: is this a mini-netpoll program with symbols?")
    sched = sym.value()
    vec = sched["allgs"]["_M_impl"]
    p, end = vec["_M_start"], vec["_M_finish"]
    while p != end:
        yield p.dereference()
        p += 1


def describe(g):
    st = int(g["status"]["_M_i"])
    s = STATUS[st] if st < len(STATUS) else str(st)
    reason = str(g["wait_reason"]).split("::")[-1]
    fd = int(g["wait_fd"])
    extra = (" " + reason + (" fd=%d" % fd if fd >= 0 else "")) if s in ("waiting", "syscall") else ""
    return "goroutine %d [%s%s]%s" % (int(g["id"]), s, extra, " (main)" if bool(g["is_main"]) else "")


class Goroutines(gdb.Command):
    """List mini-netpoll's goroutines: mnp-goroutines"""

    def __init__(self):
        super().__init__("mnp-goroutines", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        n = 0
        for gp in all_gs():
            g = gp.dereference()
            if STATUS[int(g["status"]["_M_i"])] in ("dead", "idle"):
                continue
            print(describe(g))
            n += 1
        print("%d goroutines" % n)


class Goroutine(gdb.Command):
    """Run a command on a parked goroutine's stack: mnp-goroutine ID CMD (e.g. bt)"""

    def __init__(self):
        super().__init__("mnp-goroutine", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        parts = arg.split(None, 1)
        if len(parts) != 2:
            raise gdb.GdbError("usage: mnp-goroutine ID COMMAND")
        want, cmd = int(parts[0]), parts[1]
        for gp in all_gs():
            g = gp.dereference()
            if int(g["id"]) == want:
                break
        else:
            raise gdb.GdbError("no goroutine %d" % want)
        st = STATUS[int(g["status"]["_M_i"])]
        if st not in ("waiting", "runnable"):
            raise gdb.GdbError("goroutine %d is %s: its registers are live on an M, not saved" % (want, st))
        a = arch()
        sp = int(g["ctx"]["sp"])
        ptr = gdb.lookup_type("unsigned long").pointer()
        fp = int(gdb.Value(sp + a["fp"]).cast(ptr).dereference())
        pc = int(gdb.Value(sp + a["pc"]).cast(ptr).dereference())
        rsp, rfp, rpc = a["regs"]
        saved = [int(gdb.parse_and_eval(r)) for r in a["regs"]]
        print(describe(g))
        try:
            gdb.execute("set %s = %d" % (rsp, sp + a["size"]))
            gdb.execute("set %s = %d" % (rfp, fp))
            gdb.execute("set %s = %d" % (rpc, pc))
            gdb.execute(cmd)
        finally:
            for r, v in zip(a["regs"], saved):
                gdb.execute("set %s = %d" % (r, v))


Goroutines()
Goroutine()
print("mnp: mnp-goroutines, mnp-goroutine ID bt")
