// Package supervise is the process side of koipond's multi-process
// harnesses (deploy/faulttest and school/bench/schoolbench): it starts a
// child with its output in a log file, stops it by pid with a grace
// period, samples what /proc says it costs (RSS, CPU time), and reads
// pond's /stats as pond.Stats.
//
// It signals only the processes it started, by pid, never by name. Each
// child gets its own process group (a terminal's Ctrl-C reaches only the
// harness, which stops its children in the order it chooses) and SIGKILL
// from the kernel if the harness dies first (Pdeathsig). Linux only, as
// the harnesses are.
//
// It lives under deploy, beside the fault test, and imports only pond
// (for its Stats type): both harnesses are programs at the top of the
// import graph, so importing it points down from either.
package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Command is what Start runs.
type Command struct {
	// Name names the process in errors ("school-a", "pond").
	Name string
	// Path is the program and Args its arguments (without the program).
	Path string
	Args []string
	// Env is added to the harness's environment.
	Env []string
	// Dir is the working directory ("": the harness's).
	Dir string
	// Log receives stdout and stderr; it is created (truncated), and its
	// first line is the command line, prefixed with "# ".
	Log string
}

// Validate returns every problem of c.
func (c Command) Validate() []error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("supervise: command without a name"))
	}
	if c.Path == "" {
		errs = append(errs, fmt.Errorf("supervise: %s: no program", c.Name))
	}
	if c.Log == "" {
		errs = append(errs, fmt.Errorf("supervise: %s: no log file", c.Name))
	}
	return errs
}

// Proc is one child process, started by Start.
type Proc struct {
	// Name and Log are the Command's.
	Name, Log string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it exited; set before done closes
}

// Start starts c and returns once the child runs. A goroutine waits for
// it, so Done closes when it exits, whoever ended it.
func Start(c Command) (*Proc, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f, err := os.Create(c.Log)
	if err != nil {
		return nil, fmt.Errorf("supervise: %s: %w", c.Name, err)
	}
	defer f.Close() // the child holds its own descriptor
	fmt.Fprintf(f, "# %s %s\n", c.Path, strings.Join(c.Args, " "))
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig follows the thread that forked: keep it alive meanwhile.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("supervise: starting %s: %w", c.Name, err)
	}
	p := &Proc{Name: c.Name, Log: c.Log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done closes when the child has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the child exited (nil for status 0); only meaningful once
// Done has closed.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Signal sends sig to the child's pid, unless it has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// killWait bounds the wait for a SIGKILLed child to be reaped.
const killWait = 5 * time.Second

// Stop sends sig to the child's pid and waits up to grace for it to exit;
// then it sends SIGKILL. It returns how long the child took to exit after
// sig, and an error if it had to be killed (or would not even die). A
// child that had already exited is not signaled.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) (time.Duration, error) {
	if p.Exited() {
		return 0, nil
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return time.Since(start), nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killWait):
		return time.Since(start), fmt.Errorf("%s (pid %d) did not exit within %v of %v, nor %v after SIGKILL", p.Name, p.Pid(), grace, sig, killWait)
	}
	return time.Since(start), fmt.Errorf("%s (pid %d) did not exit within %v of %v; killed", p.Name, p.Pid(), grace, sig)
}

// maxTail bounds how much of a log Tail reads (its end).
const maxTail = 1 << 20

// Tail returns the last n lines of the file at path ("" if it cannot be
// read): the part of a child's log worth printing when it failed.
func Tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		_, _ = f.Seek(fi.Size()-maxTail, 0)
	}
	b := make([]byte, maxTail)
	m, _ := io.ReadFull(f, b)
	lines := strings.Split(strings.TrimRight(string(b[:m]), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RaiseNoFile sets the open-files soft limit to the hard limit and returns
// it. Setting it explicitly makes children inherit it (Go otherwise
// restores the original soft limit in the processes it starts).
func RaiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", l.Max, err)
	}
	return l.Cur, nil
}
