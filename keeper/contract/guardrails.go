package contract

import "time"

// Guardrails is the set of global rules, evaluated on every running run.
type Guardrails struct {
	Rules     []GuardrailRule `json:"rules"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
	UpdatedBy string          `json:"updated_by,omitempty"`
}

// GuardrailsView is the global guardrails with what storing them noticed.
type GuardrailsView struct {
	*Guardrails
	Warnings []string `json:"warnings,omitempty"`
}
