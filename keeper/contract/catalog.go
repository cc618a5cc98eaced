package contract

import "time"

// File is one source file of a behavior set or formation.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// BehaviorSet is a stored behavior set: its files and what identifies it.
// Sets are content-addressed (Hash) and versioned per Name: uploading new
// content under an existing name makes version N+1; uploading content that
// is already stored returns the stored set.
type BehaviorSet struct {
	Hash      string    `json:"hash"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Files     []File    `json:"files"`
	Behaviors int       `json:"behaviors"`
	Warnings  []string  `json:"warnings,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// Formation is a stored formation file, content-addressed and versioned
// per Name like BehaviorSet.
type Formation struct {
	Hash          string  `json:"hash"`
	Name          string  `json:"name"`
	Version       int     `json:"version"`
	File          File    `json:"file"`
	Percent       float64 `json:"percent"`
	BeginWithinMS int64   `json:"begin_within_ms"`
	Steps         int     `json:"steps"`
	// Params are the launch parameters the file declares (none when it
	// declares none).
	Params    []FormationParam `json:"params,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	CreatedBy string           `json:"created_by,omitempty"`
}

// FormationParam is a launch parameter a formation declares: a launch must
// give it when Required, else Default fills in.
type FormationParam struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	Default  string `json:"default,omitempty"`
	Doc      string `json:"doc,omitempty"`
}
