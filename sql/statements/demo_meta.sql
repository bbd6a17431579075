SELECT seed, users, anchor FROM demo_meta
