package pgparse

/*
#include <stddef.h>
#include <stdint.h>

int pgparse_run_on_stack(uintptr_t handle, size_t stack_size);
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"syscall"
)

// onBigStack runs fn on a new OS thread whose stack is stackSize bytes (reserved address
// space: the kernel commits only the pages the parser touches), and waits for it. A cgo
// call fn makes runs on that thread's stack, whatever the stack size of the threads the Go
// runtime created.
func onBigStack(stackSize int, fn func()) error {
	var panicked any
	h := cgo.NewHandle(func() {
		defer func() { panicked = recover() }()
		fn()
	})
	defer h.Delete()
	if rc := C.pgparse_run_on_stack(C.uintptr_t(h), C.size_t(stackSize)); rc != 0 {
		return fmt.Errorf("pgparse: starting a parser thread with a %d-byte stack: %w", stackSize, syscall.Errno(rc))
	}
	if panicked != nil {
		panic(panicked)
	}
	return nil
}

//export pgparseOnBigStack
func pgparseOnBigStack(h C.uintptr_t) {
	cgo.Handle(h).Value().(func())()
}
