// pause: the pod sandbox's process for the devcluster's real node (containerd's
// sandbox_image), standing in for registry.k8s.io/pause, which cannot be pulled here.
//
// Like the upstream pause (a small C program), it holds the pod's namespaces open by simply
// staying alive: it waits for SIGTERM or SIGINT and exits 0, and, as PID 1 of the pod's
// PID namespace when the pod shares one (shareProcessNamespace), it reaps the zombies that
// are re-parented to it. Built static (CGO_ENABLED=0) into a scratch image by
// tests/images/base-images.sh; `pause -v` prints its version and exits.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const version = "3.10-wa"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("pause", version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
			reap()
			os.Exit(0)
		}
	}
}

// reap collects every exited child without blocking (several SIGCHLDs may coalesce into one).
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
