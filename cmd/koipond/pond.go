package main

import (
	"context"
	"errors"
	"io"
)

// runPond is replaced by the pond issue's implementation.
func runPond(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("pond: not built yet")
}
