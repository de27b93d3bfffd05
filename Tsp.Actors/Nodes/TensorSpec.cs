namespace Tsp.Actors.Nodes;

/// <summary>A tensor a model takes or gives: its name and shape (-1 for a dynamic dimension).</summary>
public sealed record TensorSpec(string Name, IReadOnlyList<long> Shape)
{
    public override string ToString() => $"{Name} {TensorSets.Shape(Shape)}";

    /// <summary>Whether a concrete or partly dynamic <paramref name="shape"/> fits this spec.</summary>
    public bool Accepts(IReadOnlyList<long> shape) =>
        shape.Count == Shape.Count && Shape.Zip(shape).All(p => p.Item1 < 0 || p.Item2 < 0 || p.Item1 == p.Item2);
}
