// keyguard-lane: the gateway's fast lane (docs/lane.md). The Python gateway starts it with its end of the control
// channel as file descriptor 3; every secret arrives on that channel, none on the command line or in the environment.
package main

import (
	"log"
	"net"
	"os"
)

func main() {
	logger := log.New(os.Stderr, "keyguard-lane: ", log.LstdFlags)
	file := os.NewFile(3, "control")
	if file == nil {
		logger.Print("no control channel on file descriptor 3")
		os.Exit(2)
	}
	conn, err := net.FileConn(file)
	file.Close() // FileConn holds its own duplicate
	if err != nil {
		logger.Printf("control channel on file descriptor 3: %v", err)
		os.Exit(2)
	}
	if err := newLane(logger).run(conn); err != nil {
		logger.Print(err)
		os.Exit(1)
	}
}
