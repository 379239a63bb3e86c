// Keeps the esad_core library non-empty whatever subset of the cores a build carries.
namespace esad {
int core_anchor() {
    return 0;
}
}  // namespace esad
