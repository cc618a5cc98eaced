package main

import (
	"context"
	"errors"
	"io"
)

func runBehaviors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("behaviors: not built yet")
}

func runFormations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("formations: not built yet")
}
