"""Facts about Mantid's Python API that the package relies on.

These run against real Mantid when it is importable and against the test double
otherwise, so they keep the double honest (see tests/mantid_double/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.mantid


@pytest.fixture()
def api():
    from mantid import api, simpleapi

    return api, simpleapi


def _create(simpleapi, signal_f, errors_f, nbins, name="ws", **kw):
    n = len(nbins)
    return simpleapi.CreateMDHistoWorkspace(
        SignalInput=signal_f,
        ErrorInput=errors_f,
        Dimensionality=n,
        Extents=kw.pop("Extents", [0.0, 1.0] * n),
        NumberOfBins=list(nbins),
        Names=kw.pop("Names", [f"D{i}" for i in range(n)]),
        Units=kw.pop("Units", ["u"] * n),
        OutputWorkspace=name,
        **kw,
    )


def test_signal_array_is_dimension_0_first_and_fortran_ordered(api):
    _, simpleapi = api
    ws = _create(simpleapi, np.arange(1.0, 10.0), np.ones(9), [3, 3])
    np.testing.assert_array_equal(ws.getSignalArray(), [[1, 4, 7], [2, 5, 8], [3, 6, 9]])
    flat = np.arange(24.0)
    ws3 = _create(simpleapi, flat, np.ones(24), [2, 3, 4], name="ws3")
    arr = ws3.getSignalArray()
    assert arr.shape == (2, 3, 4)
    assert arr.flags.f_contiguous
    np.testing.assert_array_equal(arr, flat.reshape((2, 3, 4), order="F"))
    assert ws3.signalAt(1 + 2 * 2 + 2 * 3 * 3) == arr[1, 2, 3]


def test_arrays_are_read_only(api):
    _, simpleapi = api
    ws = _create(simpleapi, np.arange(6.0), np.ones(6), [2, 3])
    arr = ws.getSignalArray()
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0, 0] = 5.0
    assert not ws.getErrorSquaredArray().flags.writeable


def test_error_input_is_sigma_and_stored_squared(api):
    _, simpleapi = api
    ws = _create(simpleapi, np.ones(4), np.array([1.0, 2.0, 3.0, 0.5]), [2, 2])
    np.testing.assert_allclose(ws.getErrorSquaredArray().ravel(order="F"), [1.0, 4.0, 9.0, 0.25])


def test_set_signal_array_checks_the_shape(api):
    _, simpleapi = api
    ws = _create(simpleapi, np.zeros(6), np.zeros(6), [2, 3])
    ws.setSignalArray(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(ws.getSignalArray(), np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError):
        ws.setSignalArray(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        ws.setSignalArray(np.zeros(6))


def test_dimensions_names_units_frames_and_logs(api):
    _, simpleapi = api
    ws = _create(
        simpleapi, np.zeros(6), np.zeros(6), [2, 3],
        Names=["[H,0,0]", "DeltaE"], Units=["r.l.u.", "meV"], Frames=["HKL", "General Frame"],
        Extents=[-1.0, 1.0, 0.0, 30.0],
    )
    assert ws.id() == "MDHistoWorkspace"
    assert ws.getNumDims() == 2
    d0, d1 = ws.getDimension(0), ws.getDimension(1)
    assert d0.name == "[H,0,0]" and d0.getDimensionId() == "[H,0,0]"
    assert d0.getMDFrame().name() == "HKL" and d1.getMDFrame().name() == "General Frame"
    assert d1.getUnits() == "meV"
    assert (d1.getMinimum(), d1.getMaximum(), d1.getNBins()) == (0.0, 30.0, 3)
    assert d1.getX(1) == pytest.approx(10.0)
    assert ws.getNumExperimentInfo() == 0
    with pytest.raises(ValueError):
        ws.getExperimentInfo(0)
    simpleapi.AddSampleLog(Workspace=ws, LogName="Ei", LogText="70.0", LogType="Number")
    assert ws.getExperimentInfo(0).run()["Ei"].value == pytest.approx(70.0)


def test_simpleapi_errors(api):
    _, simpleapi = api
    with pytest.raises(RuntimeError, match="^CreateMDHistoWorkspace-v1:"):
        _create(simpleapi, np.zeros(6), np.zeros(6), [2, 3], Units=["u"])
    with pytest.raises((TypeError, RuntimeError)):
        simpleapi.CreateMDHistoWorkspace(SignalInput=np.zeros(2), ErrorInput=np.zeros(2), OutputWorkspace="x")


def _define_algorithms(api_module):
    from mantid.kernel import Direction, StringListValidator

    class DoubleFactsAlgorithm(api_module.PythonAlgorithm):
        def category(self):
            return "Testing"

        def PyInit(self):
            self.declareProperty(api_module.IMDHistoWorkspaceProperty("InputWorkspace", "", Direction.Input), doc="in")
            self.declareProperty(api_module.IMDHistoWorkspaceProperty("OutputWorkspace", "", Direction.Output), doc="out")
            self.declareProperty("Mode", "A", StringListValidator(["A", "B"]), doc="mode")
            self.declareProperty("Steps", 3, doc="steps")

        def validateInputs(self):
            return {"Steps": "too many"} if self.getProperty("Steps").value > 5 else {}

        def PyExec(self):
            progress = api_module.Progress(self, 0.0, 1.0, self.getProperty("Steps").value)
            for _ in range(self.getProperty("Steps").value):
                if self.getProperty("Mode").value == "B":
                    self.cancel()
                progress.report()
            self.setProperty("OutputWorkspace", self.getProperty("InputWorkspace").value)

    class DoubleFactsInherited(DoubleFactsAlgorithm):
        """Defines nothing itself: Mantid does not see the base class's PyInit."""

    return DoubleFactsAlgorithm, DoubleFactsInherited


def test_python_algorithm_lifecycle(api):
    api_module, simpleapi = api
    ws = _create(simpleapi, np.ones(4), np.ones(4), [2, 2], name="facts_in")
    cls, inherited = _define_algorithms(api_module)
    api_module.AlgorithmFactory.subscribe(cls)
    api_module.AlgorithmFactory.subscribe(inherited)
    try:
        alg = api_module.AlgorithmManager.create("DoubleFactsAlgorithm")
        alg.setRethrows(True)
        alg.setProperty("InputWorkspace", "facts_in")  # a str sets the workspace name
        assert alg.getPropertyValue("InputWorkspace") == "facts_in"
        assert alg.getProperty("InputWorkspace").value.name() == "facts_in"
        with pytest.raises(ValueError):
            alg.setProperty("Mode", "C")
        assert alg.getProperty("Mode").value == "A"
        alg.setProperty("OutputWorkspace", "facts_out")
        alg.setProperty("Steps", 7)
        with pytest.raises(RuntimeError, match="^Some invalid Properties found"):
            alg.execute()
        assert "facts_out" not in api_module.mtd
        alg.setProperty("Steps", 3)
        assert alg.execute()
        assert "facts_out" in api_module.mtd

        # A cancel request turns the next progress report into KeyboardInterrupt.
        alg = api_module.AlgorithmManager.create("DoubleFactsAlgorithm")
        alg.setRethrows(True)
        alg.setProperty("InputWorkspace", ws)
        alg.setProperty("OutputWorkspace", "cancelled_out")
        alg.setProperty("Mode", "B")
        with pytest.raises(KeyboardInterrupt):
            alg.execute()
        assert "cancelled_out" not in api_module.mtd

        with pytest.raises(RuntimeError):
            api_module.AlgorithmManager.create("DoubleFactsInherited")
    finally:
        api_module.AlgorithmFactory.unsubscribe("DoubleFactsAlgorithm", 1)
        api_module.AlgorithmFactory.unsubscribe("DoubleFactsInherited", 1)


def test_string_list_validator_needs_a_list():
    from mantid.kernel import StringListValidator

    StringListValidator(["a", "b"])
    with pytest.raises(TypeError):
        StringListValidator(("a", "b"))


def test_table_workspaces(api):
    api_module, simpleapi = api
    table = simpleapi.CreateEmptyTableWorkspace(OutputWorkspace="facts_table")
    assert table.addColumn("str", "Model")
    assert table.addColumn("double", "Probability")
    table.addRow(["Goodenough", 0.75])
    table.addRow({"Model": "Dimer", "Probability": 0.25})
    assert table.rowCount() == 2 and table.columnCount() == 2
    assert table.column("Model") == ["Goodenough", "Dimer"]
    assert table.row(1) == {"Model": "Dimer", "Probability": 0.25}
    assert dict(table.toDict()) == {"Model": ["Goodenough", "Dimer"], "Probability": [0.75, 0.25]}
    assert "facts_table" in api_module.mtd
    made = api_module.WorkspaceFactory.createTable()
    assert made.rowCount() == 0 and made.id() == "TableWorkspace"
