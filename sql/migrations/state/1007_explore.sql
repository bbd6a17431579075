-- Whether an assignment is of the campaign's exploration sample (users the model did not pick,
-- messaged at random, with their own holdout; see the campaign files' `explore`), not of the
-- model's choice. `targeting report` compares the two.
ALTER TABLE targeting_assignments ADD COLUMN explore BOOLEAN NOT NULL DEFAULT FALSE;
