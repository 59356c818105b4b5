// A Go HTTP server on the standard library that serves on the socket herdsman passes (fd 3, systemd socket
// activation: LISTEN_FDS), or listens on $PORT itself when started without one. Answers 200 with
// `X-Pid: <pid>` and the pid as body. SIGINT or SIGTERM lets in-flight requests finish, then exits.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func listener() (net.Listener, error) {
	if fds, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); fds > 0 && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		// FileListener works on a copy of the descriptor: close the original.
		f := os.NewFile(3, "herdsman")
		defer f.Close()
		return net.FileListener(f)
	}
	return net.Listen("tcp", ":"+os.Getenv("PORT"))
}

func main() {
	ln, err := listener()
	if err != nil {
		log.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Pid", pid)
		fmt.Fprint(w, pid)
	})}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		<-stop
		server.Shutdown(context.Background())
	}()
	log.Printf("serving on %s pid=%s", ln.Addr(), pid)
	if err := server.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
