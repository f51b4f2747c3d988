/* Keeps the static library non-empty until the engine lands. */
int ant_policy_placeholder(void);
int ant_policy_placeholder(void)
{
    return 0;
}
