/* Keeps the static library non-empty until the engine lands. */
int ant_staging_placeholder(void);
int ant_staging_placeholder(void)
{
    return 0;
}
