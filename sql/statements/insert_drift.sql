INSERT INTO targeting_drift (run_id, run_date, dry_run, recorded_at, model, model_version, name, psi, missing_then, missing_now, sampled) VALUES
