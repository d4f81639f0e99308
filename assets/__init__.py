"""Data shipped with the agent: voice prompt catalogues (prompts/) and help videos (video/)."""
