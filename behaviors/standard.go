package behaviors

// StandardJSON returns a behavior file's bytes as standard JSON: HuJSON
// comments and trailing commas blanked (offsets kept), within the file's
// size, depth and value limits. Tools that copy parts of a file (the
// warehouse inlines sequences) read it with encoding/json after this.
func StandardJSON(data []byte) ([]byte, error) {
	if len(data) > MaxFileSize {
		return nil, &ShapeError{Msg: "file is larger than the behavior file size limit"}
	}
	return standardize(data, MaxDepth, MaxValues)
}
