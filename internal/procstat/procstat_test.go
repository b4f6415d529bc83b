package procstat

import (
	"crypto/sha256"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestCPUAgreesWithRusage burns CPU until getrusage says 200 ms were used:
// /proc must say the same, to within its 10 ms ticks, whatever the load.
func TestCPUAgreesWithRusage(t *testing.T) {
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ru0 := used()
	sum := sha256.Sum256(nil)
	for used()-ru0 < 200*time.Millisecond {
		for range 1000 {
			sum = sha256.Sum256(sum[:])
		}
	}
	ru := used() - ru0
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < ru-50*time.Millisecond || d > ru+50*time.Millisecond {
		t.Errorf("/proc says %s of CPU, getrusage %s", d, ru)
	}
}

func TestReadMemoryOfSelf(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS < 1<<20 || m.Peak < m.RSS {
		t.Errorf("memory %+v: want RSS of at least 1 MiB and a peak at least as high", m)
	}
}

func TestListenerPIDFindsSelf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := ListenerPID(ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Errorf("listener pid %d, want this process %d", pid, os.Getpid())
	}
	ln.Close()
	if _, err := ListenerPID(ln.Addr().(*net.TCPAddr).Port); err == nil {
		t.Error("a closed port still has a listener")
	}
}
